"""``vhdkit info`` as a user runs it: the installed command, human and JSON output, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from .conftest import require_tool, run
from .vhdx.test_samples import LOG_SAMPLE


def vhdkit_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("vhdkit") or shutil.which("vhdkit", path=str(__import__("pathlib").Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "vhdkit"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True)


def test_info_human_output_on_a_dirty_windows_image(sample):
    path = sample(LOG_SAMPLE)
    r = vhdkit_cmd("info", str(path))
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(":", 1) for line in r.stdout.splitlines())
    assert lines["format"].strip() == "vhdx"
    assert lines["virtual size"].strip() == "1 GiB (1073741824 bytes)"
    assert lines["block size"].strip() == "32 MiB"
    assert lines["sector size"].strip() == "512 logical, 4096 physical"
    assert lines["creator"].strip() == "Microsoft Windows 10.0.15063.0"
    assert lines["log"].strip().startswith("replayed in memory (file unchanged): 2 entries")
    assert lines["blocks"].strip() == "32 (28 not present, 3 zero, 1 fully present)"


def test_info_json_on_a_60g_qemu_image_and_through_a_memory_url(tmp_path, capsys):
    require_tool("qemu-img")
    path = tmp_path / "blank.vhdx"
    run("qemu-img", "create", "-q", "-f", "vhdx", "-o", "block_size=1M", path, "60G")
    info = json.loads(vhdkit_cmd("info", "--json", str(path)).stdout)
    assert info["virtual_size"] == 60 << 30 and info["block_size"] == 1 << 20
    assert info["details"]["bat_entries"] == 61454 and info["details"]["chunk_ratio"] == 4096
    assert info["blocks"]["total"] == 61440
    assert info["size_on_disk"] <= info["file_size"]

    # memory:// lives in one process, so this one goes through the CLI's main() in-process.
    import fsspec

    from vhdkit_cli.main import main

    fs = fsspec.filesystem("memory")
    fs.pipe("/cli/blank.vhdx", path.read_bytes())
    try:
        assert main(["info", "--json", "memory://cli/blank.vhdx"]) == 0
    finally:
        fs.rm("/cli", recursive=True)
    mem = json.loads(capsys.readouterr().out)
    assert mem["virtual_size"] == info["virtual_size"] and mem["disk_id"] == info["disk_id"]
    assert mem["path"] == "memory://cli/blank.vhdx"


@pytest.mark.parametrize("content,message", [
    (b"", "no such file"),
    (b"vhdxfile" + bytes(600), "header"),
])
def test_info_errors_are_one_line_and_exit_1(tmp_path, content, message):
    path = tmp_path / "bad.vhdx"
    if content:
        path.write_bytes(content)
    r = vhdkit_cmd("info", str(path))
    assert r.returncode == 1
    assert r.stderr.startswith("vhdkit: error: ") and message in r.stderr
    assert "Traceback" not in r.stderr


def test_version_and_help():
    r = vhdkit_cmd("--version")
    assert r.returncode == 0 and r.stdout.startswith("vhdkit ")
    r = vhdkit_cmd("info", "--help")
    assert r.returncode == 0 and "--json" in r.stdout


def test_every_command_is_listed_and_has_its_own_help():
    from vhdkit_cli.main import COMMANDS

    listing = vhdkit_cmd("--help")
    assert listing.returncode == 0
    for name, (help_text, _) in COMMANDS.items():
        assert f"{name}" in listing.stdout and help_text in listing.stdout
        own = vhdkit_cmd(name, "--help")
        assert own.returncode == 0 and own.stdout.startswith(f"usage: vhdkit {name} ")
    wrong = vhdkit_cmd("bogus")
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr


def test_info_describes_a_child_whose_parent_is_missing(sample):
    path = sample("dfvfs/fat-differential.vhd")
    r = vhdkit_cmd("info", "--json", str(path))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["format"] == "vhd" and info["type"] == "differencing"
    assert "not found" in info["parent"]["problem"] and str(path.parent / "fat-parent.vhd") in info["parent"]["problem"]
    assert info["parent"]["locators"]["W2ru"] == ".\\fat-parent.vhd"


def test_info_force_shows_a_damaged_vhd_and_its_damage(sample):
    path = sample("dfvfs/image.vhd")
    assert vhdkit_cmd("info", str(path)).returncode == 1
    r = vhdkit_cmd("info", "--force", str(path))
    assert r.returncode == 0 and "problem:" in r.stdout and "checksum mismatch" in r.stdout
