"""The control socket checks every request before anything runs: hostile or careless requests get
an answer naming what is wrong, nothing is started, and the service goes on answering."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from vhdkit.migration.service import DiskService

MiB = 1 << 20


def ask(path: Path, line: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)  # an answer, not a hang
        sock.connect(str(path))
        sock.sendall(line + b"\n")
        with sock.makefile("rb") as reader:
            answer = reader.readline()
    assert answer, "the service closed the connection without answering"
    return json.loads(answer)


@pytest.fixture
def service(tmp_path):
    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(4 * MiB))
    svc = DiskService(str(image))
    control = tmp_path / "control.sock"
    svc.serve_control(str(control))
    yield svc, control, tmp_path
    svc.stop()


def test_deeply_nested_json_is_answered_not_crashed_on(service):
    svc, control, _ = service
    for line in (b'{"cmd": "status", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
                 b"[" * 60_000, b'{"cmd": {"cmd": {"cmd": {"cmd": "status"}}}}'):
        answer = ask(control, line)
        assert answer["ok"] is False and ("nests deeper" in answer["error"] or "JSON" in answer["error"])
    assert ask(control, b'{"cmd": "status"}')["ok"] is True  # still serving
    assert ask(control, b'{"cmd": "status", "note": "[[[[[[[[[[ in a string is fine"}')["ok"] is False  # unknown field


@pytest.mark.parametrize("field, value, words", [
    ("in_flight", -5, "in_flight must be a whole number from 1 to 64"),
    ("in_flight", 10**9, "from 1 to 64"),
    ("in_flight", True, "whole number"),
    ("granularity", "3000", "power of two"),
    ("granularity", -65536, "size"),
    ("buf_size", "1T", "buf_size must be"),
    ("speed", 0, "speed must be"),
    ("auto_switch", "false", "true or false"),
    ("convergence_window", float("inf"), "seconds"),
    ("mode", "fastest", "mode must be one of write-blocking, background"),
    ("on_target_error", "ignore", "report, retry, stop"),
    ("format", "qcow2", "vhdx, vhd, raw"),
    ("colour", "blue", "takes no field 'colour'"),
])
def test_absurd_job_options_are_refused_and_nothing_starts(service, field, value, words):
    svc, control, tmp_path = service
    target = tmp_path / "target.raw"
    line = json.dumps({"cmd": "migrate", "to": str(target), field: value}, allow_nan=True).encode()
    answer = ask(control, line)
    assert answer["ok"] is False and words in answer["error"], answer
    assert svc.job is None and not target.exists()


def test_other_commands_check_their_fields_too(service):
    _, control, _ = service
    for request, words in (({"cmd": "wait", "timeout": -1}, "timeout"), ({"cmd": "wait", "state": "done"}, "state"),
                           ({"cmd": "complete", "verify": "yes"}, "true or false"), ({"cmd": "migrate"}, "needs 'to'"),
                           ({"cmd": "migrate", "to": ""}, "non-empty"), ({"cmd": "reboot"}, "unknown command"),
                           ({"cmd": "cancel", "why": "x"}, "takes no field")):
        answer = ask(control, json.dumps(request).encode())
        assert answer["ok"] is False and words in answer["error"], (request, answer)


def test_a_sound_request_still_runs(service):
    svc, control, tmp_path = service
    target = tmp_path / "target.raw"
    answer = ask(control, json.dumps({"cmd": "migrate", "to": str(target), "in_flight": 2, "speed": "64M",
                                      "granularity": "64K", "auto_switch": False}).encode())
    assert answer["ok"] is True and answer["job"]["granularity"] == 64 << 10
    assert ask(control, b'{"cmd": "wait", "state": "ready", "timeout": 30}')["job"]["state"] == "ready"
    assert ask(control, b'{"cmd": "complete", "timeout": 30}')["job"]["state"] == "completed"
    assert target.read_bytes() == bytes(4 * MiB)


def test_the_old_source_is_closed_without_fsync_after_the_switch(service):
    """Everything the guest wrote is on the target once it has switched: the old file's fsync
    would only hold up the guest's first writes to the target (one journal on ext4)."""
    svc, control, tmp_path = service
    source_store = svc.guest.active.store
    flushes = []
    flush = source_store.flush
    source_store.flush = lambda: (flushes.append(1), flush())[1]
    svc.guest.pwrite(0, b"written before the migration")
    assert ask(control, json.dumps({"cmd": "migrate", "to": str(tmp_path / "target.raw")}).encode())["ok"]
    assert ask(control, b'{"cmd": "wait", "state": "ready", "timeout": 30}')["job"]["state"] == "ready"
    assert ask(control, b'{"cmd": "complete", "timeout": 30}')["job"]["state"] == "completed"
    svc.stop()  # waits for the old source's close
    assert source_store.closed and not flushes
    assert (tmp_path / "target.raw").read_bytes()[:28] == b"written before the migration"


def test_an_old_vhdx_source_is_written_back_before_its_log_session_ends(tmp_path):
    """A VHDX source still flushes as its log session ends; its pages go back first, so that
    flush is a short journal commit."""
    import vhdkit

    image = tmp_path / "disk.vhdx"
    vhdkit.create(image, 4 * MiB, format="vhdx").close()
    svc = DiskService(str(image))
    control = tmp_path / "control.sock"
    svc.serve_control(str(control))
    source = svc.guest.active
    calls = []
    writeback, flush = source.store.start_writeback, source.store.flush
    source.store.start_writeback = lambda wait=False: (calls.append(f"writeback wait={wait}"), writeback(wait))[1]
    source.store.flush = lambda: (calls.append("flush"), flush())[1]
    try:
        svc.guest.pwrite(0, b"before the migration")
        assert ask(control, json.dumps({"cmd": "migrate", "to": str(tmp_path / "target.vhdx")}).encode())["ok"]
        assert ask(control, b'{"cmd": "wait", "state": "ready", "timeout": 30}')["job"]["state"] == "ready"
        calls.clear()
        assert ask(control, b'{"cmd": "complete", "timeout": 30}')["job"]["state"] == "completed"
    finally:
        svc.stop()
    assert source.store.closed and calls[:2] == ["writeback wait=True", "flush"], calls
    with vhdkit.open(tmp_path / "target.vhdx") as target:
        assert target.pread(0, 20) == b"before the migration"
