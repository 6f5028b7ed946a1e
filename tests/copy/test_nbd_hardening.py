"""The NBD export made fit to leave loopback: TLS with client certificates (real clients: nbdinfo,
nbdcopy, qemu-io), no TCP off this machine without TLS unless asked, a connection cap and a
handshake deadline, about 1 MiB per connection however a client pipelines, its name only, and
unix sockets that are their owner's alone and never replace a file."""

from __future__ import annotations

import os
import socket
import stat
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

import vhdkit
from vhdkit.nbd import NbdServer
from vhdkit.nbd import protocol as P
from vhdkit.nbd.listen import ListenError, is_loopback

from ..conftest import require_tool, run
from .test_nbd_protocol import connect, go, option, recv
from .test_serve import need_libnbd, vhdkit_argv
from .tls_certs import Authority

MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """``vhdkit serve IMAGE --nbd ADDRESS ARGS...`` in its own process, until stopped."""

    def __init__(self, image: Path, address: str, *args: str, umask: int | None = None) -> None:
        self.proc = subprocess.Popen(vhdkit_argv() + ["serve", str(image), "--nbd", address, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("serving"):
            raise AssertionError(f"vhdkit serve did not start: {line}{self.proc.communicate(timeout=10)}")

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        return err


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("tls")
    ours, strangers = Authority("vhdkit test CA"), Authority("someone else's CA")
    return {"server": ours.folder(where / "server", "server", "localhost"),
            "guest": ours.folder(where / "guest", "client", "guest1"),
            "intruder": ours.folder(where / "intruder", "client", "intruder"),
            "stranger": strangers.folder(where / "stranger", "client", "guest1")}


def test_tls_serves_certified_clients_only(tmp_path, credentials):
    need_libnbd()
    require_tool("qemu-io")
    image = tmp_path / "d.vhdx"
    vhdkit.create(image, size=16 * MiB).close()
    port = free_port()
    served = Serve(image, f"tcp:127.0.0.1:{port}", "--tls-creds", str(credentials["server"]),
                   "--tls-allow", "guest1", "--max-clients", "4")
    try:
        qemu = ["--object", f"tls-creds-x509,id=tls0,endpoint=client,dir={credentials['guest']}", "--image-opts",
                f"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},tls-creds=tls0"]
        run("qemu-io", *qemu, "-c", "write -P 0x33 1M 64k", "-c", "flush")
        read = run("qemu-io", *qemu, "-c", "read -P 0x33 1M 64k")
        assert "Pattern verification failed" not in read.stdout and "read 65536/65536" in read.stdout
        uri = f"nbds://127.0.0.1:{port}/?tls-certificates={credentials['guest']}"
        assert '"TLS": true' in run("nbdinfo", "--json", uri).stdout
        run("nbdcopy", uri, tmp_path / "copy.raw")
        assert (tmp_path / "copy.raw").read_bytes()[MiB : MiB + 65536] == b"\x33" * 65536
        # Refused: no TLS at all, a CA the server does not trust, a name not allowed.
        assert run("nbdinfo", f"nbd://127.0.0.1:{port}", check=False).returncode != 0
        for who in ("stranger", "intruder"):
            other = f"nbds://127.0.0.1:{port}/?tls-certificates={credentials[who]}"
            assert run("nbdinfo", other, check=False).returncode != 0, who
        s = socket.create_connection(("127.0.0.1", port), timeout=5)  # options before STARTTLS
        recv(s, P.HANDSHAKE.size)
        s.sendall(struct.pack(">I", P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES))
        assert option(s, P.OPT_LIST, b"")[0] == P.REP_ERR_TLS_REQD
        assert option(s, P.OPT_GO, struct.pack(">IH", 0, 0))[0] == P.REP_ERR_TLS_REQD
        s.close()
    finally:
        served.stop()


def test_no_tcp_off_this_machine_without_tls(tmp_path):
    image = tmp_path / "d.vhdx"
    vhdkit.create(image, size=16 * MiB).close()
    for host in ("0.0.0.0", "192.0.2.7"):
        refused = subprocess.run(vhdkit_argv() + ["serve", str(image), "--nbd", f"tcp:{host}:{free_port()}"],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "--insecure" in refused.stderr, refused.stderr
    with vhdkit.open(image) as disk, pytest.raises(ListenError, match="not a loopback address"):
        NbdServer(disk).listen("tcp:0.0.0.0:0")
    assert is_loopback("127.0.0.1") and is_loopback("127.3.2.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.7") and not is_loopback("no-such-host.invalid")


def test_one_client_at_a_time_and_a_handshake_deadline(tmp_path):
    disk = vhdkit.create(tmp_path / "d.vhdx", 8 * MiB)
    sock = tmp_path / "s.sock"
    server = NbdServer(disk, handshake_limit=0.5).listen(f"unix:{sock}").start()
    try:
        first = connect(sock)
        go(first)
        waiting = socket.socket(socket.AF_UNIX)
        waiting.settimeout(1.0)
        waiting.connect(str(sock))
        with pytest.raises(socket.timeout):  # no greeting while the slot is taken
            waiting.recv(1)
        first.close()
        waiting.settimeout(5)
        assert P.HANDSHAKE.unpack(recv(waiting, P.HANDSHAKE.size))[:2] == (P.NBDMAGIC, P.IHAVEOPT)
        started = time.monotonic()
        assert waiting.recv(1) == b""  # it never answered the greeting: dropped after 0.5 s
        assert time.monotonic() - started < 4
        late = connect(sock)  # and its slot is free again
        go(late)
        late.close()
    finally:
        server.stop()
        disk.close()


def test_more_clients_when_asked(tmp_path):
    disk = vhdkit.create(tmp_path / "d.vhdx", 8 * MiB)
    sock = tmp_path / "s.sock"
    server = NbdServer(disk, max_clients=3).listen(f"unix:{sock}").start()
    try:
        clients = [connect(sock) for _ in range(3)]
        for c in clients:
            go(c)
        c4 = socket.socket(socket.AF_UNIX)
        c4.settimeout(1.0)
        c4.connect(str(sock))
        with pytest.raises(socket.timeout):
            c4.recv(1)
        for c in clients + [c4]:
            c.close()
    finally:
        server.stop()
        disk.close()


def test_pipelined_big_reads_take_about_a_mebibyte_per_connection(tmp_path):
    """16 clients each pipelining two 32 MiB reads: buffering whole replies took 32 MiB per
    connection (1.33 GB seen with 40); pieces of 1 MiB keep the server near its idle size."""
    image = tmp_path / "d.raw"
    with open(image, "wb") as f:
        f.truncate(64 * MiB)
    sock = tmp_path / "s.sock"
    served = Serve(image, f"unix:{sock}", "--max-clients", "16", "--read-only")
    try:
        idle = served.peak_rss_kib()
        clients = []
        for _ in range(16):
            s = connect(sock)
            go(s)
            clients.append(s)

        def pipeline(s: socket.socket) -> None:
            for cookie in (1, 2):
                s.sendall(P.REQUEST.pack(P.REQUEST_MAGIC, 0, P.CMD_READ, cookie, cookie * MiB, 32 * MiB))
            for _ in (1, 2):
                magic, error, _cookie = P.SIMPLE_REPLY.unpack(recv(s, P.SIMPLE_REPLY.size))
                assert magic == P.SIMPLE_REPLY_MAGIC and error == 0
                left = 32 * MiB
                while left:
                    got = s.recv(min(left, MiB))
                    assert got
                    left -= len(got)

        threads = [threading.Thread(target=pipeline, args=(s,)) for s in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        growth = served.peak_rss_kib() - idle
        for s in clients:
            s.close()
    finally:
        served.stop()
    assert growth < 96 * 1024, f"the server grew by {growth} KiB"


def test_the_export_answers_to_its_name_only(tmp_path):
    need_libnbd()
    image = tmp_path / "d.vhdx"
    vhdkit.create(image, size=16 * MiB).close()
    sock = tmp_path / "s.sock"
    served = Serve(image, f"unix:{sock}", "--export-name", "disk1")
    try:
        assert run("nbdinfo", "--size", f"nbd+unix:///disk1?socket={sock}").stdout.strip() == str(16 * MiB)
        wrong = run("nbdinfo", "--size", f"nbd+unix:///?socket={sock}", check=False)
        assert wrong.returncode != 0
        listed = run("nbdinfo", "--list", "--json", f"nbd+unix:///?socket={sock}")
        assert '"export-name": "disk1"' in listed.stdout
    finally:
        served.stop()


def test_unix_sockets_are_private_and_never_replace_a_file(tmp_path):
    image = tmp_path / "d.vhdx"
    vhdkit.create(image, size=16 * MiB).close()
    sock, control = tmp_path / "nbd.sock", tmp_path / "ctl.sock"
    served = Serve(image, f"unix:{sock}", "--control", str(control), umask=0)
    try:
        for path in (sock, control):
            assert stat.S_ISSOCK(os.lstat(path).st_mode) and stat.S_IMODE(os.lstat(path).st_mode) == 0o600, path
        other = tmp_path / "other.vhdx"
        vhdkit.create(other, size=16 * MiB).close()
        busy = subprocess.run(vhdkit_argv() + ["serve", str(other), "--nbd", f"unix:{sock}"],
                              capture_output=True, text=True, timeout=60)
        assert busy.returncode != 0 and "already listening" in busy.stderr, busy.stderr
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)  # the live server's socket is left alone
    finally:
        served.stop()
    for path, option_ in ((tmp_path / "notes.txt", "--nbd"), (tmp_path / "ctl.txt", "--control")):
        path.write_text("keep me")
        argv = ["serve", str(image), "--nbd", f"unix:{path}" if option_ == "--nbd" else f"unix:{sock}"]
        if option_ == "--control":
            argv += ["--control", str(path)]
        refused = subprocess.run(vhdkit_argv() + argv, capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "is not a socket" in refused.stderr, refused.stderr
        assert path.read_text() == "keep me"
    stale = socket.socket(socket.AF_UNIX)  # a socket nobody listens on any more: replaced
    stale.bind(str(sock))
    stale.close()
    served = Serve(image, f"unix:{sock}")
    served.stop()


def test_stop_while_a_connection_is_being_taken_in(tmp_path, monkeypatch):
    """A connection accepted as stop() begins: its thread is either started before stop() looks,
    or never made. (stop() once joined a thread the accept loop had listed but not yet started.)"""
    import vhdkit.nbd.server as server_module

    stop_began = threading.Event()

    class LateThread(threading.Thread):
        def start(self) -> None:
            if self.name == "vhdkit-nbd-conn":  # the connection's thread starts only once stop() runs
                stop_began.wait(5)
                time.sleep(0.3)
            super().start()

    monkeypatch.setattr(server_module.threading, "Thread", LateThread)
    disk = vhdkit.create(tmp_path / "d.vhdx", 8 * MiB)
    sock = tmp_path / "s.sock"
    server = NbdServer(disk).listen(f"unix:{sock}").start()
    client = socket.socket(socket.AF_UNIX)
    client.connect(str(sock))
    time.sleep(0.2)  # accepted; its thread waits to start
    stop_began.set()
    server.stop()
    client.close()
    disk.close()
