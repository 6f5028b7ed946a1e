"""Listening sockets for the NBD export and the control socket: private unix sockets, and the
rule that decides whether a TCP address leaves this machine."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
import threading
from typing import Any, Callable

from ..errors import VhdkitError


class ListenError(VhdkitError):
    """The address cannot be listened on as asked (a file in the way, a server already there)."""


_umask_mutex = threading.Lock()


def bind_unix_private(path: str, backlog: int = 16) -> socket.socket:
    """A listening unix socket at ``path`` that only its owner may connect to (mode 0600 from the
    moment it exists, whatever the umask). A socket left by a server that died is replaced; a
    live server's socket, or any other kind of file, is refused and left as it is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ListenError(f"{path} exists and is not a socket: not replaced (remove it, or choose another path)")
        if _answers(path):
            raise ListenError(f"{path}: a server is already listening there")
        os.unlink(path)  # stale: its server is gone
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _umask_mutex:  # the umask is the process's: other threads' files are briefly private too
            old = os.umask(0o177)
            try:
                sock.bind(path)
            finally:
                os.umask(old)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise ListenError(f"cannot listen at {path}: {e.strerror}") from e
    return sock


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is on this machine (127.0.0.0/8, ::1)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def serve_requests(sock: socket.socket, handle: Callable[[bytes], dict[str, Any]], stop: Callable[[], None],
                   max_line: int = 64 * 1024) -> None:
    """A control socket's loop, on a thread of its own: a thread per connection, each request a
    JSON line of at most ``max_line`` bytes answered by ``handle`` with one JSON line; an answer
    holding ``"stopping"`` ends the service (``stop``)."""

    def talk(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while True:
                line = reader.readline(max_line + 1)
                if not line:
                    return
                if len(line) > max_line:
                    conn.sendall(b'{"ok": false, "error": "request too long"}\n')
                    return
                answer = handle(line)
                try:
                    conn.sendall(json.dumps(answer).encode() + b"\n")
                except OSError:
                    return
                if answer.get("stopping"):
                    stop()
                    return

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # the socket was closed: the service stopped
            threading.Thread(target=talk, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, name="vhdkit-control", daemon=True).start()
