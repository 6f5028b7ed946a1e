"""vhdkit library: a tree of a few hundred images made by vhdkit and qemu-img (both formats,
fixed/dynamic/differencing two deep, a moved parent, a truncated image, a dirty log, files that
are not disks) is indexed with a correct record for each; a rescan reads only what changed;
`library init` makes the four blank disks."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import vhdkit
from vhdkit.library import Library, init_blank_disks

from ..conftest import run
from ..test_cli import vhdkit_cmd

MiB = 1 << 20
GiB = 1 << 30


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The tree and what each disk in it must be recorded as: path -> (format, type, size)."""
    root = tmp_path_factory.mktemp("library")
    expect: dict[str, tuple] = {}
    for i in range(240):  # most images: tiny, made by vhdkit, in nested folders
        fmt = "vhdx" if i % 3 else "vhd"
        kind = "fixed" if i % 10 == 0 else "dynamic"
        folder = root / f"team{i % 4}" / f"vm{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"disk{i}.{fmt}"
        size = (i % 5 + 1) * MiB if kind == "fixed" else (i % 50 + 1) * 16 * MiB
        vhdkit.create(path, size, format=fmt, type=kind).close()
        expect[str(path)] = (fmt, kind, size)
    made_by_qemu = root / "qemu"
    made_by_qemu.mkdir()
    for i, (fmt, qfmt) in enumerate([("vhdx", "vhdx"), ("vhd", "vpc")] * 5):
        path = made_by_qemu / f"q{i}.{fmt}"
        opts = ["-o", "subformat=dynamic"] + (["-o", "force_size=on"] if qfmt == "vpc" else [])
        run("qemu-img", "create", "-f", qfmt, *opts, path, f"{(i + 1) * 64}M")
        expect[str(path)] = (fmt, "dynamic", (i + 1) * 64 * MiB)
    chains = root / "chains"
    chains.mkdir()
    for n, fmt in enumerate(("vhdx", "vhd", "vhdx")):  # base <- child <- grandchild
        ext = "avhdx" if fmt == "vhdx" else "vhd"
        base, child, grand = chains / f"base{n}.{fmt}", chains / f"child{n}.{ext}", chains / f"grand{n}.{ext}"
        vhdkit.create(base, 256 * MiB, format=fmt).close()
        vhdkit.create(child, format=fmt, parent=base).close()
        vhdkit.create(grand, format=fmt, parent=child).close()
        for p in (base,):
            expect[str(p)] = (fmt, "dynamic", 256 * MiB)
        for p in (child, grand):
            expect[str(p)] = (fmt, "differencing", 256 * MiB)
    moved_base, orphan = chains / "lost-base.vhdx", chains / "orphan.avhdx"
    vhdkit.create(moved_base, 64 * MiB).close()
    vhdkit.create(orphan, parent=moved_base).close()
    (root / "archive").mkdir()
    shutil.move(moved_base, root / "archive" / "lost-base.vhdx")  # the parent moved away
    expect[str(root / "archive" / "lost-base.vhdx")] = ("vhdx", "dynamic", 64 * MiB)
    expect[str(orphan)] = ("vhdx", "differencing", 64 * MiB)
    damaged = root / "damaged"
    damaged.mkdir()
    truncated = damaged / "truncated.vhdx"
    vhdkit.create(truncated, 64 * MiB, type="fixed").close()
    with open(truncated, "r+b") as f:
        f.truncate(2 * MiB)
    (damaged / "not-really.vhd").write_bytes(b"this is a text file with a disk's name\n" * 40)
    from ..conftest import samples_dir

    import lzma

    with lzma.open(samples_dir() / "discutils/vhdx-log-replay.vhdx.xz") as fin, \
            open(damaged / "dirty-log.vhdx", "wb") as fout:
        shutil.copyfileobj(fin, fout)
    for name in ("readme.txt", "install.iso", "vm.xml", "disk.vhdx.bak"):
        (root / name).write_bytes(b"not a disk" * 100)
    return root, expect


def test_every_image_gets_a_correct_record(tree, tmp_path):
    root, expect = tree
    with Library(tmp_path / "lib.sqlite3") as library:
        report = library.scan([root])
        assert report.files == len(expect) + 3 and report.skipped == 4 and report.removed == 0
        records = {r.path: r for r in library.records()}
        for path, (fmt, kind, size) in expect.items():
            r = records[path]
            assert (r.format, r.type, r.virtual_size) == (fmt, kind, size), path
            assert r.file_size == os.path.getsize(path) and r.disk_id
            assert r.verdict == "clean" or path.endswith("orphan.avhdx"), (path, r.findings)
        chain = records[str(root / "chains" / "grand0.avhdx")]
        assert chain.parent == str(root / "chains" / "child0.avhdx") and chain.parent_status == "resolved"
        assert [(d, os.path.basename(r.path)) for d, r in library.tree(root / "chains" / "base1.vhd")] == [
            (0, "base1.vhd"), (1, "child1.vhd"), (2, "grand1.vhd")]
        broken = library.records(broken_parent=True)
        assert [os.path.basename(r.path) for r in broken] == ["orphan.avhdx"]
        assert "not found" in broken[0].parent_problem and broken[0].parent.endswith("lost-base.vhdx")
        damaged = {os.path.basename(r.path): r for r in library.records() if "damaged" in r.path}
        assert damaged["truncated.vhdx"].verdict in ("corrupt", "not checked") and damaged["truncated.vhdx"].findings
        assert damaged["not-really.vhd"].verdict == "not checked" and damaged["not-really.vhd"].format is None
        dirty = damaged["dirty-log.vhdx"]
        assert dirty.format == "vhdx" and dirty.virtual_size == vhdkit.open(root / "damaged" / "dirty-log.vhdx").size
        assert len(library.records(format="vhd", type="fixed")) == sum(
            1 for f, k, _ in expect.values() if (f, k) == ("vhd", "fixed"))
        assert all(r.virtual_size >= GiB // 2 for r in library.records(min_size=GiB // 2))


def test_a_rescan_reads_exactly_the_files_that_changed(tree, tmp_path, monkeypatch):
    root, expect = tree
    db = tmp_path / "lib.sqlite3"
    with Library(db) as library:
        library.scan([root])
    touched = sorted(p for p in expect if "/team" in p)[:2]  # neither is a parent
    for path in touched:
        with vhdkit.open(path, "r+") as disk:
            disk.pwrite(0, b"changed")
    opened: list[str] = []
    from vhdkit.library import records  # what a scan opens and checks each file with

    real_open, real_check = records.open_image, records.check
    monkeypatch.setattr(records, "open_image", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    monkeypatch.setattr(records, "check", lambda path, *a, **k: opened.append(str(path)) or real_check(path, *a, **k))
    with Library(db) as library:
        report = library.scan([root])
        assert sorted(report.read) == touched and report.unchanged == report.files - 2
        assert sorted(set(opened)) == touched  # the other files were not even opened
        opened.clear()
        assert library.scan([root]).read == [] and opened == []


def test_a_parent_written_to_breaks_its_children_on_the_next_scan(tmp_path):
    base, child, grand = tmp_path / "base.vhdx", tmp_path / "child.avhdx", tmp_path / "grand.avhdx"
    vhdkit.create(base, 64 * MiB).close()
    vhdkit.create(child, parent=base).close()
    vhdkit.create(grand, parent=child).close()
    with Library(tmp_path / "lib.sqlite3") as library:
        library.scan([tmp_path])
        assert library.record(grand).parent_status == "resolved"
        with vhdkit.open(child, "r+") as disk:  # a new DataWriteGuid: the grandchild no longer matches
            disk.pwrite(0, b"x")
        report = library.scan([tmp_path])
        assert sorted(report.read) == sorted([str(child), str(grand)])
        assert library.record(grand).parent_status == "broken" and library.record(child).parent_status == "resolved"
        os.rename(base, tmp_path / "elsewhere.bin")
        library.scan([tmp_path])
        assert "no longer there" in library.record(child).parent_problem
        os.rename(tmp_path / "elsewhere.bin", base)
        report = library.scan([tmp_path])
        assert str(child) in report.read and library.record(child).parent_status == "resolved"


def test_init_makes_the_four_blank_disks(tmp_path):
    made = init_blank_disks(tmp_path)
    assert [state for _, state in made] == ["created"] * 4
    sizes = {os.path.basename(p): vhdkit.open(p).size for p, _ in made}
    assert sizes == {"Blank Disk - Small.vhdx": 16 * GiB, "Blank Disk - Small.vhd": 16 * GiB,
                     "Blank Disk - Large.vhdx": 60 * GiB, "Blank Disk - Large.vhd": 60 * GiB}
    for path, _ in made:
        info = json.loads(run("qemu-img", "info", "--output=json", path).stdout)
        assert info["virtual-size"] == sizes[os.path.basename(path)], path
        assert vhdkit.check(path).verdict == "clean"
    assert [state for _, state in init_blank_disks(tmp_path)] == ["present"] * 4


def test_the_command(tree, tmp_path):
    root, _ = tree
    db = str(tmp_path / "lib.sqlite3")
    scanned = vhdkit_cmd("library", "scan", str(root), "--db", db, "--json")
    assert scanned.returncode == 0, scanned.stderr
    listed = json.loads(vhdkit_cmd("library", "list", "--db", db, "--broken-parent", "--json").stdout)
    assert [os.path.basename(r["path"]) for r in listed] == ["orphan.avhdx"]
    found = json.loads(vhdkit_cmd("library", "find", "grand", "--db", db, "--json").stdout)
    assert sorted(os.path.basename(r["path"]) for r in found) == ["grand0.avhdx", "grand1.vhd", "grand2.avhdx"]
    shown = vhdkit_cmd("library", "show", str(root / "chains" / "base0.vhdx"), "--db", db)
    assert "└─ " in shown.stdout and "grand0.avhdx" in shown.stdout
    missing = vhdkit_cmd("library", "show", "/nowhere.vhdx", "--db", db)
    assert missing.returncode == 1 and "not in the library" in missing.stderr


def test_a_scan_over_smb_gives_the_same_records(smb_env, tmp_path):
    samba = smb_env
    folder = samba.share_path("share1") / "library-test"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "sub").mkdir(parents=True)
    try:
        vhdkit.create(folder / "base.vhdx", 64 * MiB).close()
        vhdkit.create(folder / "sub" / "child.avhdx", 64 * MiB, parent=folder / "base.vhdx").close()
        vhdkit.create(folder / "old.vhd", 32 * MiB, format="vhd", type="fixed").close()
        vhdkit.create(folder / "lost.vhdx", 16 * MiB).close()
        vhdkit.create(folder / "orphan.avhdx", parent=folder / "lost.vhdx").close()
        (folder / "lost.vhdx").unlink()
        (folder / "notes.txt").write_text("not a disk")
        with open(folder / "cut.vhdx", "wb") as f:
            f.write((folder / "old.vhd").read_bytes()[:4096])
        url = samba.url("share1", "library-test")
        with Library(tmp_path / "local.db") as local, Library(tmp_path / "smb.db") as remote:
            local.scan([folder])
            report = remote.scan([url])
            assert report.files == 5 and report.skipped == 1
            skip = {"path", "parent", "scanned_at", "size_on_disk", "mtime_ns", "findings", "parent_problem"}
            strip = lambda r: {k: v for k, v in r.as_dict().items() if k not in skip}  # noqa: E731
            by_name = {r.path[len(str(folder)):]: strip(r) for r in local.records()}
            over_smb = {r.path[len(url):]: strip(r) for r in remote.records()}
            assert over_smb == by_name
            child = remote.record(f"{url}/sub/child.avhdx")
            assert child.parent_status == "resolved" and child.parent.endswith("library-test/base.vhdx")
            assert remote.record(f"{url}/orphan.avhdx").parent_status == "broken"
            assert remote.scan([url]).read == []  # the listing's sizes and times match the index
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_init_on_an_empty_share(smb_env):
    samba = smb_env
    folder = samba.share_path("share2") / "blank-library"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    folder.chmod(0o777)  # made here as root; the share's user writes in it
    try:
        url = samba.url("share2", "blank-library")
        made = init_blank_disks(url)
        assert [state for _, state in made] == ["created"] * 4
        for path, _ in made:
            name = path.rsplit("/", 1)[1]
            size = 16 * GiB if "Small" in name else 60 * GiB
            local = folder / name
            info = json.loads(run("qemu-img", "info", "--output=json", local).stdout)
            assert info["virtual-size"] == size, name
            assert vhdkit.check(path).verdict == "clean" and vhdkit.check(local).verdict == "clean"
        assert [state for _, state in init_blank_disks(url)] == ["present"] * 4
    finally:
        shutil.rmtree(folder, ignore_errors=True)
