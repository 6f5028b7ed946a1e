"""Plan a VM move with the transfer types VMM names, and refuse one whose preconditions fail, each
in a sentence, before anything is made (specs/vm.md, "Moving a VM"):

- **Live** moves only the running state to another host: every file the VM uses must already sit
  on an SMB share (its configuration records a UNC path, ``\\\\server\\share\\...``) that both hosts
  reach. A VM on a host's own disks (``C:\\...``) is refused, naming the files.
- **Live VSM** moves storage and host together, and is for storage the destination cannot see:
  refused when the destination host reaches the VM's share (Live does that without copying).
- **Live Storage** moves the files to another place, the VM staying on its host: the host must be
  able to write there, and the place must not be where the VM already is.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, NamedTuple, Sequence

from ..placement.locations import Host, Location
from .model import VmConfig

KINDS = ("live", "live-vsm", "live-storage")


class MovePlan(NamedTuple):
    kind: str
    vm: str
    source_host: str
    host: str  # the host running the VM after the move
    destination: str | None  # where the files go (None: they stay)
    files: list[str]  # every file the VM uses, as its configuration and chains record them
    refusals: list[str]  # why it cannot be done; empty: it can

    @property
    def allowed(self) -> bool:
        return not self.refusals


def plan_move(vm: VmConfig, kind: str, *, source_host: Host, destination_host: Host | None = None,
              to: str | None = None, shares: Mapping[str, str] | None = None) -> MovePlan:
    """Check ``kind``'s preconditions for ``vm`` (running on ``source_host``). ``to``: the location the
    VM's folder goes into for Live Storage / Live VSM (a folder or smb:// share path, as placement's). ``shares``: how a UNC ``\\\\server\\share``
    is reached, as an smb:// URL (default ``smb://server/share``)."""
    if kind not in KINDS:
        raise ValueError(f"transfer type must be one of {', '.join(KINDS)}, not {kind!r}")
    files = _files(vm)
    where = {f: _share_of(f, vm, shares) for f in files}  # file -> (UNC share, its URL); None: a host's own
    refusals: list[str] = []
    target_host = destination_host or source_host
    if kind in ("live", "live-vsm") and destination_host is None:
        raise ValueError(f"{kind} moves the VM to another host: give destination_host")
    if kind == "live":
        if to is not None:
            refusals.append("Live moves only the running state: its files stay where they are (give no "
                            "destination, or use Live VSM / Live Storage to move them)")
        local = [f for f in files if where[f] is None]
        if local:
            refusals.append(f"Live needs every file of {vm.name} on an SMB share both hosts reach; these are on "
                            f"{source_host.name}'s own storage: {', '.join(local[:5])}"
                            + (f" and {len(local) - 5} more" if len(local) > 5 else "")
                            + " (move them first with Live Storage, or use Live VSM)")
        for share, url in sorted({w for w in where.values() if w is not None}):
            for host in (source_host, target_host):
                reach = Location(url).reach(host)
                if not reach.writable:
                    refusals.append(f"{host.name} cannot write to {share}: {reach.why or 'no access'}")
    elif kind == "live-vsm":
        for share, url in sorted({w for w in where.values() if w is not None}):
            if Location(url).reach(target_host).writable:
                refusals.append(f"{target_host.name} already reaches {share}, where {vm.name}'s files are: Live "
                                "VSM is for storage the destination cannot see; use Live, which copies nothing")
        refusals += _destination(vm, to, target_host)
    else:
        if destination_host is not None and destination_host.name != source_host.name:
            refusals.append("Live Storage keeps the VM on its host: use Live VSM to change host too")
        refusals += _destination(vm, to, source_host)
    return MovePlan(kind, vm.name, source_host.name, target_host.name, to, files, refusals)


def preflight_move(vm: VmConfig, kind: str, *, to: str | None = None,
                   facts: Sequence[Any] = ()) -> list[Any]:
    """The preflight rules (specs/preflight.md) that apply to moving ``vm`` this way. ``facts``:
    host facts (preflight.HostFacts, the source's first, then the destination's, as ``vhdkit
    preflight collect`` gathers them): then every rule, for this VM and transfer type. Without
    them, what this host can see itself: rule 15 for a share the files go to (reachable, and
    speaking SMB 3). Results as ``vhdkit.preflight.run`` gives them."""
    import socket

    from .. import preflight

    if facts:
        if len(facts) < 2:
            raise ValueError("preflight facts: give the source host's and the destination's")
        return preflight.run(list(facts), vm=vm.name, transfer=kind, target=to)
    if not to or not to.startswith("smb://"):
        return []
    from ..preflight.facts import HostFacts
    from ..preflight.linux import share_facts

    here = HostFacts(host=socket.gethostname(), kind="linux", shares=[share_facts(to)])
    return preflight.run([here, here], only=[15], transfer="live-storage", target=to)


def _destination(vm: VmConfig, to: str | None, host: Host) -> list[str]:
    if not to:
        return ["say where the files go (to=)"]
    reach = Location(to).reach(host)
    if not reach.writable:
        return [f"{host.name} cannot write to {to}: {reach.why or 'no access'}"]
    if vm.folder and to.rstrip("/") == os.path.dirname(vm.folder.rstrip("/")):
        return [f"{to} is where {vm.name} already is"]
    return []


def _files(vm: VmConfig) -> list[str]:
    """Every file as recorded: each disk's path, then its parents' names beside it."""
    out: list[str] = []
    for disk in vm.disks:
        out.append(disk.path)
        base = disk.path.replace("/", "\\").rsplit("\\", 1)[0]
        for parent in disk.chain[1:]:
            out.append(base + "\\" + parent.replace("\\", "/").rsplit("/", 1)[-1])
    return out


def _share_of(path: str, vm: VmConfig, shares: Mapping[str, str] | None) -> tuple[str, str] | None:
    """The share a file the configuration records is on, as (``\\\\server\\share``, the smb:// URL
    it is reached by): a UNC path's; a path relative to the VM's folder (vhdkit's description)
    is on the folder's share when the VM was read from one. None: on a host's own storage."""
    share = _unc_share(path)
    if share is not None:
        return share, _url(share, shares)
    if vm.folder.startswith("smb://") and not path.startswith(("/", "\\")) and ":" not in path[:2]:
        from urllib.parse import urlsplit

        parts = urlsplit(vm.folder)
        name = parts.path.strip("/").split("/", 1)[0]
        return f"\\\\{parts.hostname}\\{name}", f"{parts.scheme}://{parts.netloc}/{name}"
    return None


def _unc_share(path: str) -> str | None:
    """``\\\\server\\share`` of a UNC path; None for anything else (a drive letter: a host's own)."""
    if not path.startswith("\\\\"):
        return None
    parts = path[2:].split("\\")
    return f"\\\\{parts[0]}\\{parts[1]}" if len(parts) > 1 and parts[0] and parts[1] else None


def _url(share: str, shares: Mapping[str, str] | None) -> str:
    server, name = share[2:].split("\\", 1)
    return (shares or {}).get(share) or f"smb://{server}/{name}"


__all__: Sequence[str] = ["KINDS", "MovePlan", "plan_move", "preflight_move"]
