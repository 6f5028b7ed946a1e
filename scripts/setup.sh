#!/usr/bin/env bash
# Sourced by demo.sh and test.sh: installs missing system tools (apt-get, as root) and puts
# vhdkit with its test extras into ./.venv. Safe to run again; it only installs what is missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

missing=()
command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
command -v vhdiinfo >/dev/null 2>&1 || missing+=(libvhdi-utils)
command -v xz >/dev/null 2>&1 || missing+=(xz-utils)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)   # crcmod's C extension (CRC-32C at C speed)
PATH="$PATH:/usr/sbin" command -v smbd >/dev/null 2>&1 || missing+=(samba)  # the SMB tests' own loopback server
PATH="$PATH:/usr/sbin" command -v ip >/dev/null 2>&1 || missing+=(iproute2)  # a second test file server on 127.0.0.2
PATH="$PATH:/usr/sbin" command -v ethtool >/dev/null 2>&1 || missing+=(ethtool)  # preflight reads offloads; tests set them
command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)  # preflight's don't-fragment probe between hosts
command -v nbdinfo >/dev/null 2>&1 || missing+=(libnbd-bin)  # nbdinfo/nbdcopy: outside NBD clients of vhdkit serve
/usr/bin/python3 -c 'import nbd' >/dev/null 2>&1 || missing+=(python3-libnbd)  # the migration tests' guest writer
command -v qemu-storage-daemon >/dev/null 2>&1 || missing+=(qemu-system-common)  # QEMU's mirror: the bench's peer
command -v tshark >/dev/null 2>&1 || missing+=(tshark)  # Wireshark's dissectors judge the NVGRE/VXLAN frames
command -v hivexregedit >/dev/null 2>&1 || missing+=(libwin-hivex-perl libhivex-bin)  # a real hive takes the .reg file
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
python3 - <<'PY' >/dev/null 2>&1 || missing+=(python3-dev)
import os, sysconfig, sys
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]}"
    # The samba package must not start a system smbd on port 445: tests start their own on loopback.
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  else
    echo "setup: missing ${missing[*]} (run as root on Debian to install them); tests that need them will skip, or fail under CI=true" >&2
  fi
fi

venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[test]"
export PATH="$venv/bin:$PATH"
