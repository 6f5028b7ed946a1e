"""Crash at every point of an operation's writes; the image must open (replaying its log), pass
validation, and hold the old or the new state - never a mix, never losing flushed data.

Each scenario runs once uncut to count its store operations, then again for every cut point
under both crash models of crashing.py. "Validation" is vhdkit opening it (read-only, then
read-write, which replays) and `qemu-img check` on the result (for images qemu can open).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Callable

import pytest

import vhdkit
from vhdkit.storage import LocalStore
from vhdkit.vhdx import VhdxDisk

from ..conftest import require_tool, run
from .crashing import CrashingStore, PowerCut

MiB = 1 << 20
MODELS = ["prefix", "flushed"]


def run_cut(path: Path, budget: int | None, model: str, scenario: Callable[[VhdxDisk], None],
            resolver=None, disk_class=VhdxDisk) -> CrashingStore:
    store = CrashingStore(LocalStore(path, writable=True), budget, model)
    try:
        disk = disk_class(store, writable=True, parent_resolver=resolver)
        try:
            scenario(disk)
        finally:
            try:
                disk.close()
            except PowerCut:
                pass
    except PowerCut:
        pass
    finally:
        store.base.close()  # the "process" is gone: its lock and descriptors with it
    return store


def validate(path: Path, qemu: bool = True) -> bytes:
    """Open read-only (replay in memory), then read-write (replay to disk); both must agree."""
    with vhdkit.open(path) as disk:
        before = disk.pread(0, disk.size)
    vhdkit.open(path, "r+").close()
    with vhdkit.open(path) as disk:
        assert disk.log_replay.state == "empty"
        assert disk.pread(0, disk.size) == before, "read-write replay differs from in-memory replay"
    if qemu:
        check = run("qemu-img", "check", path, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
    return before


def every_cut(pristine: Path, work: Path, scenario, check, resolver_factory=None, qemu=True) -> int:
    total = run_cut(_fresh(pristine, work), None, "prefix", scenario,
                    resolver_factory() if resolver_factory else None).ops
    assert total > 3
    for model in MODELS:
        for budget in range(total + 1):
            store = run_cut(_fresh(pristine, work), budget, model, scenario,
                            resolver_factory() if resolver_factory else None)
            try:
                content = validate(work, qemu)
                check(content, budget, total, store)
            except AssertionError as e:
                raise AssertionError(f"cut after {budget} of {total} operations ({model} model): {e}") from e
    return total


def _fresh(pristine: Path, work: Path) -> Path:
    shutil.copyfile(pristine, work)
    return work


@pytest.fixture(autouse=True)
def _qemu():
    require_tool("qemu-img")


def test_block_allocation_and_in_place_writes(tmp_path):
    pristine = tmp_path / "pristine.vhdx"
    with vhdkit.create(pristine, 64 * MiB, block_size=1 * MiB) as disk:
        disk.pwrite(0, b"\xaa" * MiB)
    new_run = b"\xbb" * (3 * MiB - 512)

    def scenario(disk):
        disk.pwrite(2 * MiB + 512, new_run)  # blocks 2-4, allocated in one transaction
        disk.pwrite(64 * 1024, b"\xcc" * 65536)  # in place, in block 0
        disk.flush()

    flush_done: list[int] = []

    def check(content, budget, total, store):
        region = content[2 * MiB + 512 : 5 * MiB]
        assert region in (bytes(len(region)), new_run), "allocation half visible"
        assert content[2 * MiB : 2 * MiB + 512] == bytes(512)
        in_place = content[64 * 1024 : 128 * 1024]
        pieces = {in_place[i : i + 4096] for i in range(0, 65536, 4096)}
        assert pieces <= {b"\xaa" * 4096, b"\xcc" * 4096}, "a 4 KiB piece is neither old nor new"
        assert content[:65536] == b"\xaa" * 65536 and content[128 * 1024 : MiB] == b"\xaa" * (MiB - 131072)
        if budget == total:
            assert region == new_run and in_place == b"\xcc" * 65536, "a completed, flushed write was lost"
        flush_done.append(budget)

    total = every_cut(pristine, tmp_path / "work.vhdx", scenario, check)
    assert len(flush_done) == 2 * (total + 1)


def test_metadata_change_disk_id(tmp_path):
    pristine = tmp_path / "pristine.vhdx"
    old_id, new_id = uuid.uuid4(), uuid.uuid4()
    vhdkit.create(pristine, 64 * MiB, disk_id=old_id).close()

    def scenario(disk):
        disk.set_disk_id(new_id)

    seen = set()

    def check(content, budget, total, store):
        with vhdkit.open(tmp_path / "work.vhdx") as disk:
            assert disk.disk_id in (old_id, new_id)
            seen.add(disk.disk_id)
            if budget == total:
                assert disk.disk_id == new_id

    every_cut(pristine, tmp_path / "work.vhdx", scenario, check)
    assert seen == {old_id, new_id}  # the cuts really land on both sides of the change


def test_differencing_partial_write_and_sector_bitmap(tmp_path):
    from vhdkit.ops.open import parent_resolver

    parent = tmp_path / "parent.vhdx"
    with vhdkit.create(parent, 64 * MiB, block_size=2 * MiB) as disk:
        disk.pwrite(0, b"\x11" * (8 * MiB))
    child = tmp_path / "pristine.vhdx"
    vhdkit.create(child, parent=parent).close()
    work = tmp_path / "work.vhdx"

    def scenario(disk):
        disk.pwrite(2 * MiB + 4096, b"\x22" * 1024)  # two sectors of block 1: bitmap + BAT entry
        disk.pwrite(6 * MiB, b"\x33" * (2 * MiB))  # a whole block: FULLY_PRESENT

    states = set()

    def check(content, budget, total, store):
        a = content[2 * MiB + 4096 : 2 * MiB + 5120]
        b = content[6 * MiB : 8 * MiB]
        assert a in (b"\x11" * 1024, b"\x22" * 1024)
        assert b in (b"\x11" * (2 * MiB), b"\x33" * (2 * MiB))
        around = content[2 * MiB : 2 * MiB + 4096] + content[2 * MiB + 5120 : 4 * MiB]
        assert around == b"\x11" * len(around), "sectors outside the write stopped reading the parent"
        states.add((a[0], b[0]))
        if budget == total:
            assert (a[0], b[0]) == (0x22, 0x33)

    every_cut(child, work, scenario, check, resolver_factory=lambda: parent_resolver(work),
              qemu=False)
    assert (0x11, 0x11) in states and (0x22, 0x33) in states


def test_create_is_all_or_nothing(tmp_path, monkeypatch):
    import vhdkit.ops.create as create_module  # the module; vhdkit.create is the function
    target = tmp_path / "new.vhdx"
    counter: dict[str, int | None] = {"budget": None, "ops": 0}
    real_open_store = create_module.open_store

    def crashing_open_store(path, **kw):
        store = CrashingStore(real_open_store(path, **kw), counter["budget"])
        counter["store"] = store  # type: ignore[assignment]
        return store

    monkeypatch.setattr(create_module, "open_store", crashing_open_store)
    vhdkit.create(target, 16 << 30).close()
    total = counter["store"].ops  # type: ignore[union-attr]
    target.unlink()
    for budget in range(total + 1):
        counter["budget"] = budget
        try:
            vhdkit.create(target, 16 << 30).close()
        except PowerCut:
            pass
        if budget < total:
            assert not target.exists(), f"a cut after {budget} of {total} left a file under the name"
        else:
            with vhdkit.open(target) as disk:
                assert disk.size == 16 << 30
            assert run("qemu-img", "check", target, check=False).returncode == 0
            target.unlink()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".vhdkit-tmp")]
    assert leftovers == []


def test_metadata_change_parent_locator(tmp_path, monkeypatch):
    """Set-VHD -ParentPath: a longer locator moves to a new place in the metadata region and its
    table entry with it, in one log transaction: every cut leaves the old paths or the new, whole."""
    folder = tmp_path / "a"
    folder.mkdir()
    (tmp_path / "b").mkdir()
    vhdkit.create(folder / "base.vhdx", 16 * MiB).close()
    pristine = folder / "pristine.vhdx"
    vhdkit.create(pristine, parent=folder / "base.vhdx").close()
    shutil.copyfile(folder / "base.vhdx", tmp_path / "b" / "base.vhdx")  # both places hold the parent
    with vhdkit.open(pristine, resolve_parents=False) as disk:
        old = disk.parent_paths()
    new_relative = "..\\b\\" + "\\..\\b" * 20 + "\\base.vhdx"  # longer than the old item: it must move
    new = [("relative_path", new_relative), ("absolute_win32_path", str(tmp_path / "b" / "base.vhdx"))]
    work = folder / "work.vhdx"
    monkeypatch.setenv("VHDKIT_ALLOWED_PARENT_DIRS", str(tmp_path))  # a/ and b/ both

    def scenario(disk):
        disk.set_parent_paths(new_relative, str(tmp_path / "b" / "base.vhdx"))

    seen = []

    def check(content, budget, total, store):
        with vhdkit.open(work, resolve_parents=False) as disk:
            paths = disk.parent_paths()
        assert paths in (old, new), paths
        seen.append(paths == new)
        if budget == total:
            assert paths == new

    every_cut(pristine, work, scenario, check, qemu=False)
    assert True in seen and False in seen
