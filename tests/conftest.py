"""Shared fixtures: outside tools (qemu-img, qemu-io, vhdiinfo), real samples, image helpers.

A test that needs something from outside the project skips when it is missing, saying what is
missing, except under CI=true, where it fails: CI must run every test.
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing prerequisite is a failure)")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (scripts/test.sh installs it)")
    assert path is not None
    return path


def run_on_terminal(argv: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal for its stdout and stderr, as a person at a terminal
    would; its exit code and everything it wrote there."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout and stderr are the terminal
        os.execv(argv[0], argv)
    output = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def run(*args: str | os.PathLike[str], check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    require_tool(str(args[0]))
    return subprocess.run([os.fspath(a) for a in args], check=check, capture_output=True, text=True, **kw)


def samples_dir() -> Path:
    return Path(os.environ.get("VHDKIT_SAMPLES", ROOT.parent / "shared" / "samples"))


@pytest.fixture
def sample(tmp_path: Path) -> Callable[[str], Path]:
    """``sample("discutils/vhdx-log-replay.vhdx")`` -> a fresh decompressed copy in tmp_path."""

    def get(name: str) -> Path:
        src = samples_dir() / (name + ".xz")
        if not src.exists():
            src = samples_dir() / name
        if not src.exists():
            unavailable(f"sample {name} not found under {samples_dir()} (set VHDKIT_SAMPLES)")
        dst = tmp_path / Path(name).name
        if src.suffix == ".xz":
            with lzma.open(src) as fin, open(dst, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        else:
            shutil.copyfile(src, dst)
        return dst

    return get


def qemu_img_info(path: Path, fmt: str | None = None) -> dict[str, Any]:
    args = ["qemu-img", "info", "--output=json"]
    if fmt:
        args += ["-f", fmt]
    return json.loads(run(*args, path).stdout)


def vhdiinfo(path: Path) -> dict[str, str]:
    """vhdiinfo's "Key: value" lines as a dict."""
    out = run("vhdiinfo", path).stdout
    fields = {}
    for line in out.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def sha256_of_disk(disk: Any, chunk: int = 4 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    disk.seek(0)
    while True:
        data = disk.read(chunk)
        if not data:
            break
        h.update(data)
    return h.hexdigest()


def pyvhdi_read(child: Path, parent: Path, length: int, offset: int = 0) -> bytes:
    """What libvhdi (pyvhdi) reads from a differencing ``child`` with ``parent`` set."""
    import pyvhdi

    p, c = pyvhdi.file(), pyvhdi.file()
    p.open(str(parent))
    c.open(str(child))
    try:
        c.set_parent(p)
        return bytes(c.read_buffer_at_offset(length, offset))
    finally:
        c.close()
        p.close()


# -- the SMB tests' Samba: started once for the session on 127.0.0.1, stopped at the end ----------
# (here, not in tests/smb, so that migration tests can move disks onto its shares too)
SMB_STATE = Path(os.environ.get("VHDKIT_SMB_STATE", "/tmp/vhdkit-test-smb"))


@pytest.fixture(scope="session")
def samba():
    from .smb.samba import Samba, SambaError

    # hostb (a second Hyper-V host's identity) may use share1 and small, not share2; "secure" is
    # a share the server lets no one use unencrypted
    server = Samba(SMB_STATE, port=int(os.environ.get("VHDKIT_SMB_PORT", "4445")), sized={"small": "64M"},
                   sealed=("secure",), other_users={"hostb": "hostb-test-pw"}, only={"share2": ("vhdkit",)})
    try:
        server.start(fresh=True)  # a session begins with empty shares
    except SambaError as e:
        unavailable(f"no test Samba: {e}")
    yield server
    server.stop()
    server.unmount()


@pytest.fixture
def smb_env(samba, monkeypatch):
    """The password where vhdkit looks for it (never in a URL the tests print)."""
    monkeypatch.setenv("VHDKIT_SMB_PASSWORD", samba.password)
    return samba


# -- a test that hangs ends the run, saying which test and where every thread stood -------------
# A deadlock must cost minutes, not the whole CI budget, and leave a diagnosis: past the limit a
# timer thread prints the test's name and every thread's stack to the real stderr (pytest
# captures fd 2) and ends the process with status 1. faulthandler's own C timer backs it up in
# case the interpreter itself is stuck.
TEST_TIME_LIMIT = float(os.environ.get("VHDKIT_TEST_TIME_LIMIT", "600"))
_watchdog_stream: Any = None


def pytest_configure(config: pytest.Config) -> None:
    global _watchdog_stream
    _watchdog_stream = os.fdopen(os.dup(2), "w")


def _hung(nodeid: str) -> None:
    import faulthandler

    stream = _watchdog_stream
    stream.write(f"\n\n{nodeid} has run for over {TEST_TIME_LIMIT:g} s (VHDKIT_TEST_TIME_LIMIT): it is stuck. "
                 "Every thread's stack, then the run ends:\n")
    stream.flush()
    faulthandler.dump_traceback(file=stream, all_threads=True)
    stream.flush()
    os._exit(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    import faulthandler
    import threading

    timer = threading.Timer(TEST_TIME_LIMIT, _hung, args=(item.nodeid,))
    timer.daemon = True
    timer.start()
    faulthandler.dump_traceback_later(TEST_TIME_LIMIT + 60, exit=True, file=_watchdog_stream)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        timer.cancel()
