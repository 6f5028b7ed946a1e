"""A create or convert killed mid-way leaves its hidden temporary file; the next run on the same
target removes it (only when its process is gone and nobody holds its lock), and `vhdkit check`
of the folder reports it meanwhile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import vhdkit
from vhdkit.ops.leftovers import is_stale, stale_temporaries

from .test_cli import vhdkit_cmd

MiB = 1 << 20
# a writer that starts the real temporary file (named, locked, partly written) and then waits
WRITER = """
import sys, time
from vhdkit.ops.create import write_temporary
def slow(store, **_):
    store.pwrite(0, b"half an image")
    print("writing", flush=True)
    time.sleep(600)
write_temporary(sys.argv[1], slow, {})
"""


def start_writer(target: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    return proc


def temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".vhdkit-tmp"))


def test_a_killed_runs_temporary_is_reported_then_removed_by_the_next_run(tmp_path):
    target = tmp_path / "disk.vhdx"
    killed = start_writer(target)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    [left] = temporaries(tmp_path)
    assert left.name.startswith(".disk.vhdx.") and is_stale(left)
    other = tmp_path / "other.vhdx"
    running = start_writer(other)  # alive, holding its lock: not stale, never touched
    try:
        [busy] = [p for p in temporaries(tmp_path) if p.name.startswith(".other.vhdx.")]
        assert not is_stale(busy) and stale_temporaries(tmp_path) == [str(left)]
        r = vhdkit_cmd("check", "--json", str(tmp_path))
        reports = json.loads(r.stdout)["images"]
        assert r.returncode == 3 and [x["path"] for x in reports] == [str(left)]
        assert reports[0]["verdict"] == "leaks" and reports[0]["leaked_bytes"] == left.stat().st_size
        vhdkit.create(target, 16 * MiB).close()  # the next run on that target
        assert not left.exists() and busy.exists()
        assert vhdkit_cmd("check", str(tmp_path)).returncode == 0  # the image clean, the busy one not reported
    finally:
        running.kill()
        running.wait(10)
    assert stale_temporaries(tmp_path) == [str(busy)]  # its writer gone now: stale in turn


def test_a_killed_convert_is_cleaned_by_the_next_convert(tmp_path):
    source = tmp_path / "src.raw"
    with open(source, "wb") as f:
        for i in range(64):
            f.seek(i * 4 * MiB)
            f.write(os.urandom(MiB))
    target = tmp_path / "out.vhdx"
    stale = tmp_path / f".out.vhdx.{_dead_pid()}-0bad0bad.vhdkit-tmp"
    stale.write_bytes(b"a convert that was killed")
    vhdkit.convert(source, target)
    assert not stale.exists() and temporaries(tmp_path) == []
    with vhdkit.open(target) as disk:
        assert disk.pread(4 * MiB, 16) == source.read_bytes()[4 * MiB : 4 * MiB + 16]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    time.sleep(0.05)
    return proc.pid  # reaped: no such process (barring reuse within the test)
