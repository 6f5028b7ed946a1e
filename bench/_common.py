"""Shared by the benchmarks: timing whole processes, medians, table printing."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from typing import Sequence


def timed(cmd: Sequence[str], stdin: bytes | None = None, settle: bool = False) -> float:
    """Wall time of one whole process. ``settle``: first write back every dirty page (untimed), so
    a run does not pay for the writeback of the run before it."""
    if settle:
        os.sync()
    start = time.perf_counter()
    subprocess.run(list(cmd), check=True, input=stdin, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
