#!/usr/bin/env bash
# Sets up vhdkit, creates a blank 60 GiB dynamic VHDX (VMM's "Blank Disk - Large") and inspects it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/setup.sh"
dir=${1:-/tmp/vhdkit-demo}
mkdir -p "$dir"
disk="$dir/Blank Disk - Large.vhdx"
vhdkit create "$disk" --blank large --force
vhdkit info "$disk"
