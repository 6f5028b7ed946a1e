"""Listening sockets for the NBD export and the control socket: private unix sockets, and the
rule that decides whether a TCP address leaves this machine."""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import threading

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
