"""Shared by the benchmarks: timing whole processes, peak resident memory, medians, table printing."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent


class Timing(float):
    """Seconds of one whole process; ``peak_rss``: its peak resident set in bytes, when asked for."""

    peak_rss: int | None = None


GNU_TIME = "/usr/bin/time"


def under_gnu_time(cmd: Sequence[str], report: str) -> list[str]:
    """``cmd`` run by GNU time (Debian's package "time"), which writes the command's peak RSS in
    KiB to the file ``report`` (read it with reported_peak_rss).

    Not our own wait4: the kernel carries the peak of the memory a process had before exec into
    its ru_maxrss, and a child forked (or vforked) from a Python process starts with all of the
    parent's (a C tool then shows 18 MiB; 218 MiB after the parent allocates 200). GNU time forks
    from its own ~1 MiB, and its figure includes the command's own waited-for children."""
    if not os.path.exists(GNU_TIME):
        raise SystemExit("GNU time is needed for peak RSS figures (apt-get install time)")
    return [GNU_TIME, "-f", "%M", "-o", report, *cmd]


def reported_peak_rss(report: IO[str]) -> int:
    """Bytes, from the file under_gnu_time named (opened before the run, read after it)."""
    return int(report.read().split()[-1]) * 1024


def timed(cmd: Sequence[str], stdin: bytes | None = None, settle: bool = False, rss: bool = False,
          check: bool = True) -> Timing:
    """Wall time of one whole process. ``settle``: first (untimed) write back every dirty page, so
    a run does not pay for the writeback of the run before it. ``rss``: also learn its peak RSS
    (under_gnu_time); the wrapper adds ~0.8 ms, so benches ask for it on an untimed warm-up run.
    ``check``: a failing command stops the bench; without it (a command expected to fail), its
    complaints on stderr are not shown."""
    if settle:
        os.sync()
    if rss:
        with tempfile.NamedTemporaryFile("r", prefix="vhdkit-bench-rss-") as report:
            result = timed(under_gnu_time(cmd, report.name), stdin, check=check)
            result.peak_rss = reported_peak_rss(report)
            return result
    start = time.perf_counter()
    subprocess.run(list(cmd), check=check, input=stdin, stdout=subprocess.DEVNULL,
                   stderr=None if check else subprocess.DEVNULL)
    return Timing(time.perf_counter() - start)


def reset_peak_rss() -> None:
    """Start this process's peak RSS (VmHWM) again from its current RSS (Linux >= 4.0), so that
    peak_rss() after an in-process measurement is that measurement's peak, not the setup's."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def status_bytes(field: str, pid: int | str = "self") -> int:
    """A size from /proc/PID/status in bytes: "VmHWM" (peak resident set since exec or the last
    reset_peak_rss) or "VmRSS" (resident now). A process's own, not its parent's."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/{pid}/status")


def peak_rss(pid: int | str = "self") -> int:
    return status_bytes("VmHWM", pid)


def mib(n: float) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def peak(timing: Timing) -> str:
    """A run's peak RSS (timed(..., rss=True)), for a table."""
    return "-" if timing.peak_rss is None else mib(timing.peak_rss)


_PAGE_REPORTING_DELAY = Path("/sys/module/page_reporting/parameters/min_free_ms")


@contextlib.contextmanager
def hot_freed_memory(delay_ms: int = 10_000) -> Iterator[str]:
    """Keep memory freed by one run from going back to the VM's host before the next run.

    This VM reports free memory to its host as soon as it is freed (virtio-balloon free page
    reporting, ``min_free_ms`` 0); a process that then gets those pages back pays a host fault
    per page. A benchmark that writes 600 MiB then deletes it hands the next run cold pages at
    random: measured, runs of any tool stalled by 0.3-1.5 s (6x the system time) in about one
    of three, and medians measured noise. With reporting delayed past a run, no stalls. The
    setting is restored on exit. Yields a sentence saying what was done, for the report."""
    try:
        old = _PAGE_REPORTING_DELAY.read_text().strip()
        _PAGE_REPORTING_DELAY.write_text(str(delay_ms))
    except OSError:
        yield "free page reporting left as it is (not this VM's kind, or not root): expect noisy runs"
        return
    try:
        yield f"free page reporting delayed to {delay_ms} ms while measuring (restored to {old} ms after)"
    finally:
        _PAGE_REPORTING_DELAY.write_text(old)


def runs_and_size(doc: str | None, runs: int = 5, size: str = "1G") -> tuple[int, str, int]:
    """The --runs and --size every file-size benchmark takes: (runs, size as given, size in bytes)."""
    import argparse

    sys.path.insert(0, str(ROOT))
    from vhdkit.units import parse_size

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=runs)
    ap.add_argument("--size", default=size)
    args = ap.parse_args()
    return args.runs, args.size, parse_size(args.size)


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
    launcher.write_text(f"#!{venv_dir / 'bin' / 'python'}\nimport sys\nfrom vhdkit_cli.main import run\n"
                        "sys.exit(run())\n")
    launcher.chmod(0o755)
    return str(launcher)
