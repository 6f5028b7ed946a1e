#!/usr/bin/env bash
# Sets up vhdkit, makes a blank 60 GiB dynamic VHDX and shows what vhdkit sees in it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/setup.sh"
dir=${1:-/tmp/vhdkit-demo}
mkdir -p "$dir"
disk="$dir/blank-60G.vhdx"
rm -f "$disk"
# `vhdkit create` is not there yet; qemu-img makes the blank disk meanwhile.
qemu-img create -q -f vhdx "$disk" 60G
vhdkit info "$disk"
