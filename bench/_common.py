"""Shared by the benchmarks: timing whole processes, medians, table printing."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: Sequence[str], stdin: bytes | None = None, settle: bool = False) -> float:
    """Wall time of one whole process. ``settle``: first (untimed) write back every dirty page, so
    a run does not pay for the writeback of the run before it, and compact free memory: on this
    VM a run that must build large page-cache folios from fragmented memory stalls for up to a
    second, at random, whichever tool it is (measured: 1 run in 3 without, 1 in 16 with)."""
    if settle:
        os.sync()
        compact_memory()
    start = time.perf_counter()
    subprocess.run(list(cmd), check=True, input=stdin, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def compact_memory() -> None:
    try:
        with open("/proc/sys/vm/compact_memory", "w") as f:
            f.write("1")
    except OSError:  # not root, or no such knob: runs are just noisier
        pass


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def installed_vhdkit(workdir: Path) -> str:
    """A ``vhdkit`` command installed the way users get it, for timing whole processes.

    The project's own environment has an editable install, whose import hook costs every Python
    start several ms, and this environment may forbid writing bytecode. A user's ``pip install``
    has neither: it copies the packages into site-packages and compiles them. So do that in a
    fresh venv under ``workdir`` that also sees the running environment's dependencies, and
    return a launcher written as pip writes console scripts.
    """
    venv_dir = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv_dir)], check=True)
    site = Path(subprocess.run([str(venv_dir / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    deps = sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]
    # After vhdkit's own folder on sys.path: the running environment's packages (crcmod, fsspec, ...).
    (site / "zz-bench-deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    # What a wheel install puts in site-packages (pyproject.toml's package-dir), compiled as pip does.
    for package, source in (("vhdkit", ROOT / "vhdkit"), ("vhdkit_cli", ROOT / "cli")):
        shutil.copytree(source, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([str(venv_dir / "bin" / "python"), "-m", "compileall", "-q", str(site / "vhdkit"),
                    str(site / "vhdkit_cli")], check=True, stdout=subprocess.DEVNULL)
    launcher = venv_dir / "bin" / "vhdkit"
    launcher.write_text(f"#!{venv_dir / 'bin' / 'python'}\nimport sys\nfrom vhdkit_cli.main import main\n"
                        "sys.exit(main())\n")
    launcher.chmod(0o755)
    return str(launcher)
