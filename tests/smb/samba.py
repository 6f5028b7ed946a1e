"""The tests' own Samba: a private smbd on a loopback address, started and stopped by the tests.

Everything lives in one state folder (configuration, password database, locks, logs, shares);
nothing under /etc changes. Shares: writable ones, a read-only one, and optionally small ones on
their own tmpfs, so "disk full" is real. Free space per share can be faked without a restart
(``set_free``): smbd runs the share's ``dfree command`` on every query.

Needs root (smbd, a unix account behind the SMB user, tmpfs mounts) and the samba package
(scripts/setup.sh installs it). Facts it relies on are in specs/smb.md.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SBIN = "/usr/sbin"


class SambaError(RuntimeError):
    pass


class Samba:
    def __init__(self, state: Path, *, host: str = "127.0.0.1", port: int = 4445, user: str = "vhdkit",
                 password: str = "vhdkit-test-pw", shares: tuple[str, ...] = ("share1", "share2"),
                 read_only: tuple[str, ...] = ("roshare",), sized: dict[str, str] | None = None,
                 other_users: dict[str, str] | None = None, only: dict[str, tuple[str, ...]] | None = None,
                 sealed: tuple[str, ...] = (), encryption: str = "if_required",
                 max_protocol: str = "SMB3") -> None:
        """``other_users``: more SMB users (name -> password); ``only``: share -> the users that may
        use it (default: every user); ``sealed``: writable shares the server allows only encrypted;
        ``encryption``: the server's "server smb encrypt" ("off": it offers no encryption at all);
        ``max_protocol``: "SMB2" makes a server that speaks SMB 2.x only (no SMB 3)."""
        if not host.startswith("127."):
            raise ValueError("the test server listens on loopback only")
        self.state, self.host, self.port = Path(state), host, port
        self.user, self.password = user, password
        self.shares, self.read_only, self.sized = shares, read_only, dict(sized or {})
        self.other_users = dict(other_users or {})
        self.only = dict(only or {})
        self.sealed, self.encryption = sealed, encryption
        self.max_protocol = max_protocol
        self.conf = self.state / "smb.conf"

    # -- where things are --------------------------------------------------------------------
    def share_path(self, share: str) -> Path:
        return self.state / "shares" / share

    def url(self, share: str, path: str = "") -> str:
        """smb://user@host:port/share/path (no password: that comes from the environment)."""
        return f"smb://{self.user}@{self.host}:{self.port}/{share}/{path.lstrip('/')}"

    def set_free(self, share: str, total: int, free: int) -> None:
        """What the share reports as its size and free space, from the next query on."""
        (self.state / "dfree" / share).write_text(f"{total} {free}\n")

    def clear_free(self, share: str) -> None:
        (self.state / "dfree" / share).unlink(missing_ok=True)

    def sessions(self) -> list[dict[str, str]]:
        """The server's own view of who is connected (smbstatus --json): for each tree connect,
        the share, the user and whether its traffic is encrypted, and with what."""
        shown = subprocess.run(["smbstatus", "-s", str(self.conf), "--json"], capture_output=True,
                               text=True, check=True)
        import json

        status = json.loads(shown.stdout)
        by_session = status.get("sessions", {})
        out = []
        for tcon in status.get("tcons", {}).values():
            session = by_session.get(str(tcon.get("session_id")), {})
            sealing = tcon.get("encryption", {})  # degree "full": every request on this tree connect
            out.append({"share": tcon.get("service"), "user": session.get("username"),
                        "encrypted": sealing.get("degree") == "full", "cipher": sealing.get("cipher")})
        return out

    # -- life --------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0, *, fresh: bool = False) -> None:
        """Start smbd (stopping an earlier one of this folder); ``fresh`` empties the shares first."""
        if os.geteuid() != 0:
            raise SambaError("the test Samba needs root (smbd, useradd, mount)")
        if not Path(SBIN, "smbd").exists():
            raise SambaError("smbd is not installed (scripts/setup.sh installs the samba package)")
        self.stop()
        self._on_loopback()
        self._layout(fresh)
        self._write_conf()
        run = subprocess.run
        users = {self.user: self.password, **self.other_users}
        for user in users:
            if run(["id", "-u", user], capture_output=True).returncode != 0:
                run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                     "/usr/sbin/nologin", user], check=True, capture_output=True)
        self._chown_shares()
        for user, password in users.items():
            run(["smbpasswd", "-c", str(self.conf), "-s", "-a", user], input=f"{password}\n{password}\n",
                text=True, check=True, capture_output=True)
        log = open(self.state / "log" / "start.log", "ab")
        try:
            run([f"{SBIN}/smbd", "-D", "-s", str(self.conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                check=True, close_fds=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not self.listening():
            if time.monotonic() > deadline:
                raise SambaError(f"smbd did not listen on {self.host}:{self.port}: {self._log_tail()}")
            time.sleep(0.05)

    def listening(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop every process started from this configuration (smbd and its helpers)."""
        for _ in range(100):
            pids = self._our_pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM if _ < 40 else signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        for pid_file in (self.state / "run").glob("*.pid"):
            pid_file.unlink(missing_ok=True)

    def unmount(self) -> None:
        for share in self.sized:
            path = self.share_path(share)
            if os.path.ismount(path):
                subprocess.run(["umount", str(path)], check=False, capture_output=True)

    # -- inside ------------------------------------------------------------------------------
    def _on_loopback(self) -> None:
        """smbd binds only to addresses on an interface: put 127.x.y.z on lo if it is not there."""
        shown = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True)
        if self.host == "127.0.0.1" or f" {self.host}/" in shown.stdout:
            return
        added = subprocess.run(["ip", "addr", "add", f"{self.host}/8", "dev", "lo"], capture_output=True, text=True)
        if added.returncode != 0:
            raise SambaError(f"cannot add {self.host} to lo: {added.stderr.strip()}")

    def _layout(self, fresh: bool) -> None:
        for sub in ("private", "lock", "state", "cache", "run", "ncalrpc", "binddns", "log", "shares", "dfree", "bin"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        (self.state / "private").chmod(0o700)
        for path in (self.state, self.state / "shares", self.state / "bin", self.state / "dfree"):
            path.chmod(0o755)
        for share in (*self.shares, *self.read_only, *self.sized, *self.sealed):
            self.share_path(share).mkdir(exist_ok=True)
            for leftover in self.share_path(share).iterdir() if fresh else ():
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
        for share, size in self.sized.items():
            path = self.share_path(share)
            if not os.path.ismount(path):
                subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                               check=True, capture_output=True)
        for share in (*self.shares, *self.read_only, *self.sized, *self.sealed):
            # smbd runs "<dfree command> <dir>" and reads "total free blocksize" (1 KiB blocks here)
            script = self.state / "bin" / f"dfree-{share}"
            script.write_text(
                "#!/bin/sh\n"
                f'f="{self.state}/dfree/{share}"\n'
                'if [ -r "$f" ]; then read -r total free < "$f"; echo "$((total / 1024)) $((free / 1024)) 1024"\n'
                "else df -P -k \"${1:-.}\" | awk 'NR==2 { print $2, $4, 1024 }'; fi\n")
            script.chmod(0o755)

    def _chown_shares(self) -> None:
        entry = pwd.getpwnam(self.user)
        for share in (*self.shares, *self.read_only, *self.sized, *self.sealed):
            os.chown(self.share_path(share), entry.pw_uid, entry.pw_gid)
        path = self.state
        while path != path.parent:  # smbd, as the user, must reach the shares
            if not os.stat(path).st_mode & 0o001:
                raise SambaError(f"{path} is not traversable by {self.user}: put the state folder under /tmp")
            path = path.parent

    def _write_conf(self) -> None:
        s = self.state
        lines = [
            "[global]",
            "server role = standalone server", "workgroup = WORKGROUP", "netbios name = VHDKITTEST",
            f"smb ports = {self.port}", f"interfaces = {self.host}", "bind interfaces only = yes",
            "disable netbios = yes", f"server min protocol = {'SMB2_02' if self.max_protocol == 'SMB2' else 'SMB3'}",
            f"server max protocol = {self.max_protocol}",
            f"server smb encrypt = {self.encryption}",
            f"passdb backend = tdbsam:{s}/private/passdb.tdb", f"private dir = {s}/private",
            f"lock directory = {s}/lock", f"state directory = {s}/state", f"cache directory = {s}/cache",
            f"pid directory = {s}/run", f"ncalrpc dir = {s}/ncalrpc", f"binddns dir = {s}/binddns",
            f"log file = {s}/log/log.%m", "max log size = 10000", "log level = 1",
            "map to guest = never", "restrict anonymous = 2", "obey pam restrictions = no",
            "unix password sync = no", "load printers = no", "printing = bsd", "printcap name = /dev/null",
            "disable spoolss = yes", "usershare max shares = 0", "dfree cache time = 0",
        ]
        everyone = (self.user, *self.other_users)
        for share in (*self.shares, *self.sized, *self.read_only, *self.sealed):
            lines += ["", f"[{share}]", f"path = {self.share_path(share)}",
                      f"read only = {'yes' if share in self.read_only else 'no'}",
                      f"valid users = {' '.join(self.only.get(share, everyone))}",
                      # files the other users make stay usable by everyone the share admits
                      "force user = " + self.user, f"dfree command = {s}/bin/dfree-{share}",
                      # as Windows does: an allocation size is really reserved (sparse files stay sparse)
                      "strict allocate = yes"]
            if share in self.sealed:
                lines.append("server smb encrypt = required")
        self.conf.write_text("\n".join(lines) + "\n")

    def _our_pids(self) -> list[int]:
        conf = str(self.conf)
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                status = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if status == "Z":
                continue
            if any(a.decode(errors="replace") in (conf, f"-s{conf}", f"--configfile={conf}") for a in argv):
                pids.append(int(proc.name))
        return pids

    def _log_tail(self) -> str:
        text = ""
        for name in ("start.log", "log.smbd"):
            path = self.state / "log" / name
            if path.exists():
                text += path.read_text(errors="replace")[-2000:]
        return text
