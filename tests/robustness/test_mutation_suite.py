"""The mass mutation suite (tests/robustness/mutation.py) as CI runs it: at least 20,000 mutated
images across every structure of VHD and VHDX, in a process of its own so its peak memory is its
own. VHDKIT_SOAK=N runs N mutants instead (a longer soak; the time limit grows with it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..conftest import samples_dir

ROOT = Path(__file__).resolve().parents[2]
CI_COUNT = 25_000


def test_twenty_thousand_mutants_only_vhdkit_errors_no_hang_bounded_memory():
    count = int(os.environ.get("VHDKIT_SOAK", CI_COUNT))
    # Hangs are caught per mutant (an alarm each, in mutation.py) and counted as escapes; this
    # deadline only stops a runner that is stuck outside them, so it is generous (~1 ms a mutant
    # here, unloaded): a loaded machine must not turn a slow pass into a failure.
    limit = max(1200, count // 10)
    proc = subprocess.run([sys.executable, "-m", "tests.robustness.mutation", "--count", str(count), "--seed",
                           os.environ.get("VHDKIT_MUTATION_SEED", "1"), "--samples", str(samples_dir())],
                          cwd=ROOT, capture_output=True, text=True, timeout=limit)
    assert proc.stdout, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["escaped"] == [], json.dumps(result["escaped"], indent=1)
    assert proc.returncode == 0, proc.stderr
    assert result["mutants"] == count >= 20_000
    # every structure of every format got its share, and the mutants reached past the first checks
    structures = result["by_structure"]
    for name in ("vhdx header 1", "vhdx region table 2", "vhdx metadata table", "vhdx metadata items", "vhdx BAT",
                 "vhdx log", "vhd footer", "vhd footer copy", "vhd dynamic header", "vhd BAT", "vhd locator data"):
        assert structures.get(name, 0) >= count // 100, (name, structures)
    outcomes = result["outcomes"]
    assert outcomes["opened and read"] > count // 2 and outcomes["check: corrupt"] > count // 10
    assert result["max_rss_kib"] < 512 * 1024, f"peak memory {result['max_rss_kib']} KiB"
    print(json.dumps({k: result[k] for k in ("mutants", "seconds", "outcomes", "max_rss_kib")}))


def test_sizes_claiming_terabytes_in_a_small_file_are_refused_before_any_allocation(tmp_path):
    """A 4 MiB VHDX whose metadata says 64 TiB of 1 MiB blocks (a 512 MiB BAT), and a VHD whose
    dynamic header claims four million BAT entries: refused, and the process does not grow."""
    import struct

    import pytest

    import vhdkit
    from vhdkit.units import MiB, TiB

    from ..vhdx.patching import VIRTUAL_DISK_SIZE_GUID, metadata_items

    path = tmp_path / "small.vhdx"
    vhdkit.create(path, 64 * MiB, block_size=MiB).close()
    buf = bytearray(path.read_bytes())
    at, _ = metadata_items(bytes(buf))[VIRTUAL_DISK_SIZE_GUID]
    struct.pack_into("<Q", buf, at, 64 * TiB)
    path.write_bytes(bytes(buf))
    assert len(buf) <= 5 * MiB
    vhd = tmp_path / "small.vhd"
    vhdkit.create(vhd, 64 * MiB, format="vhd").close()
    raw = bytearray(vhd.read_bytes())
    struct.pack_into(">I", raw, 512 + 28, 1 << 22)  # MaxTableEntries: 16 MiB of BAT in a tiny file
    struct.pack_into(">I", raw, 512 + 36, 0)
    struct.pack_into(">I", raw, 512 + 36, ~(sum(raw[512:1536])) & 0xFFFFFFFF)
    vhd.write_bytes(bytes(raw))
    from .peak import peak_growth_kib

    for image in (path, vhd):  # refused here too
        with pytest.raises(vhdkit.CorruptImageError):
            vhdkit.open(image)
    grown_kib = peak_growth_kib("""
for image in sys.argv[1:]:
    try:
        vhdkit.open(image).close()
        raise SystemExit(image + " opened")
    except vhdkit.CorruptImageError:
        pass
    assert vhdkit.check(image).exit_code == 2, image
""", str(path), str(vhd))
    assert grown_kib < 64 * 1024, f"refusing grew the process by {grown_kib} KiB"
