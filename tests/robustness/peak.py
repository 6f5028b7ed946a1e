"""Memory a piece of vhdkit code takes, measured where nothing else has run: in a fresh process.

The test process's own peak RSS is useless for this: after the image tests it is already higher
than anything one small open reaches, so a delta reads 0 whatever the code does (and getrusage's
ru_maxrss even carries a parent's peak across exec). VmHWM of a fresh interpreter is the figure.
"""

from __future__ import annotations

import subprocess
import sys

_PROLOGUE = """
import sys
import vhdkit

def _hwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise SystemExit("no VmHWM in /proc/self/status")

_base = _hwm_kib()
"""


def peak_growth_kib(code: str, *args: str) -> int:
    """How far the peak RSS of a fresh interpreter (vhdkit imported) grows while ``code`` runs
    (``sys.argv[1:]`` are ``args``); the code's own failure fails the measurement."""
    script = _PROLOGUE + code + "\nprint(_hwm_kib() - _base)\n"
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])
