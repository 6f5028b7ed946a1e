"""A parent locator is the image's word, and images can be hostile: a locator that names a FIFO
hangs no command, a device or a file that is not a disk image is never opened, and parents are
looked for only in the allowed folders (by default the image's own folder and those below it),
by every command that follows a chain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import vhdkit
from vhdkit.errors import ParentNotFoundError, StorageError
from vhdkit.storage import LocalStore

MiB = 1 << 20
COMMANDS = (["info"], ["check"], ["convert", "{child}", "{out}"], ["resize", "{child}", "--size", "+1M"], ["compact"],
            ["merge", "{child}", "--to", "{out}"])


def vhdkit_run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The command in its own process, with a deadline: a hang fails the test instead of the suite."""
    return subprocess.run([sys.executable, "-m", "vhdkit", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def chain(folder: Path, parent_folder: Path | None = None) -> tuple[Path, Path]:
    parent_folder = parent_folder or folder
    for place in (folder, parent_folder):
        place.mkdir(parents=True, exist_ok=True)
    base, child = parent_folder / "base.vhdx", folder / "child.avhdx"
    with vhdkit.create(base, 8 * MiB) as disk:
        disk.pwrite(0, b"base")
    vhdkit.create(child, parent=base).close()
    return base, child


def argv(command: list[str], child: Path, out: Path) -> list[str]:
    if len(command) == 1:
        return [command[0], str(child)]
    return [a.format(child=child, out=out) for a in command]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_parent_that_is_a_fifo_hangs_no_command(tmp_path, command):
    base, child = chain(tmp_path)
    base.unlink()
    os.mkfifo(base)  # the relative locator now names a FIFO nobody writes to
    r = vhdkit_run(*argv(command, child, tmp_path / "out.vhdx"))
    assert "not a regular file" in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert r.returncode != 0 or command == ["info"]  # info shows a child without its parent, saying why


def test_a_fifo_or_device_is_never_opened_as_an_image(tmp_path):
    fifo = tmp_path / "pipe.vhdx"
    os.mkfifo(fifo)
    code = ("import sys\nfrom vhdkit.storage import LocalStore\nfrom vhdkit.errors import StorageError\n"
            f"try:\n    LocalStore({str(fifo)!r})\nexcept StorageError as e:\n    print(e)\n")
    # in its own process, with a deadline: a blocking open would otherwise hang the suite
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30).stdout
    assert "is a FIFO, not a disk image" in out  # at once: opened O_NONBLOCK, refused on its descriptor
    with pytest.raises(StorageError, match="is a character device, not a disk image"):
        vhdkit.open("/dev/zero")
    (tmp_path / "zero.vhdx").symlink_to("/dev/zero")  # a disk image's name, a device behind it
    base, child = chain(tmp_path / "vm")
    base.unlink()
    base.symlink_to("/dev/zero")
    with pytest.raises(ParentNotFoundError, match="not a regular file|outside the allowed folders"):
        vhdkit.open(child, allowed_parent_dirs=["/"])


def test_a_parent_without_a_disk_images_name_is_not_even_opened(tmp_path, monkeypatch):
    base, child = chain(tmp_path)
    secret = tmp_path / "shadow123"  # a VHDX, but named like any other file (/etc/shadow, say)
    base.rename(secret)
    # Point both locators at it: "base.vhdx" and "shadow123" are the same length, and the
    # metadata region has no checksum, so the child stays a valid VHDX whose locators name it.
    data = child.read_bytes()
    patched = data.replace("base.vhdx".encode("utf-16-le"), "shadow123".encode("utf-16-le"))
    assert patched.count("shadow123".encode("utf-16-le")) == 2
    child.write_bytes(patched)
    opened: list[str] = []
    real_init = LocalStore.__init__

    def watching(self, path, **kw):  # type: ignore[no-untyped-def]
        opened.append(os.fspath(path))
        real_init(self, path, **kw)

    monkeypatch.setattr(LocalStore, "__init__", watching)
    with pytest.raises(ParentNotFoundError, match="not a disk image's name"):
        vhdkit.open(child, allowed_parent_dirs=["/"])
    assert opened == [str(child)]  # the candidate was refused by its name, never opened
    with pytest.raises(ValueError, match="a parent must be named"):
        vhdkit.create(tmp_path / "another.avhdx", parent=secret)  # nor is such a chain made


def test_parents_outside_the_image_folder_need_allowing(tmp_path):
    base, child = chain(tmp_path / "vms" / "web01", tmp_path / "library")
    with pytest.raises(ParentNotFoundError, match="outside the allowed folders"):
        vhdkit.open(child)
    r = vhdkit_run("info", str(child))  # info shows the child anyway, and why its parent is not open
    assert "outside the allowed folders" in r.stdout and "VHDKIT_ALLOWED_PARENT_DIRS" in r.stdout
    assert vhdkit_run("check", str(child)).returncode == 1  # incomplete: the chain cannot be checked
    with vhdkit.open(child, allowed_parent_dirs=[tmp_path / "library"]) as disk:
        assert disk.pread(0, 4) == b"base"
    for allow in (["--allowed-parent-dir", str(tmp_path / "library")], ["--allowed-parent-dir", str(tmp_path)]):
        shown = vhdkit_run("info", *allow, str(child))
        assert shown.returncode == 0 and "not found" not in shown.stdout
        assert vhdkit_run("check", *allow, str(child)).returncode == 0
        out = tmp_path / f"flat-{len(allow[1])}.vhdx"
        assert vhdkit_run("convert", *allow, str(child), str(out)).returncode == 0
    env = {"VHDKIT_ALLOWED_PARENT_DIRS": f"/nowhere{os.pathsep}{tmp_path / 'library'}"}
    assert "not found" not in vhdkit_run("info", str(child), env=env).stdout
    assert vhdkit_run("check", str(child), env=env).returncode == 0
    # below the image's own folder needs nothing
    nested_base, nested_child = chain(tmp_path / "vm2", tmp_path / "vm2" / "Snapshots")
    with vhdkit.open(nested_child) as disk:
        assert disk.pread(0, 4) == b"base"
