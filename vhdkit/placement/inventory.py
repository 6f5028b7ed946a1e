"""An inventory file: the hosts (with the SMB identity each uses) and the candidate locations.

    {"hosts": [{"name": "hosta", "username": "svc-hosta", "password_env": "HOSTA_SMB_PASSWORD", "local": true},
               {"name": "hostb", "username": "svc-hostb", "credentials_file": "/etc/vhdkit/hostb.cred"}],
     "locations": ["smb://fs1.example:445/vms", {"where": "smb://fs2.example/vms", "encrypt": true}, "/srv/vms"],
     "measure_as": "hosta"}

JSON, or TOML with the same keys (Python 3.11+). Passwords are never written in the file: each host
names an environment variable or a credentials file (``username = ...`` / ``password = ...``).
``measure_as`` picks whose credentials measure the shares (default: the first host with an identity).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import PlacementError
from ..storage.smb import read_credentials_file
from .locations import Host, Identity, Location


class Inventory(NamedTuple):
    hosts: tuple[Host, ...]
    locations: tuple[Location, ...]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise PlacementError(f"no host {name!r} in the inventory (hosts: {', '.join(h.name for h in self.hosts)})")


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    text = Path(path).read_text()
    try:
        if str(path).endswith(".toml"):
            import tomllib  # Python 3.11+

            data: dict[str, Any] = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (ValueError, ImportError) as e:
        raise PlacementError(f"cannot read the inventory {path}: {e}") from None
    extra = set(data) - {"hosts", "locations", "measure_as"}
    if extra:
        raise PlacementError(f"unknown inventory keys: {', '.join(sorted(extra))}")
    hosts = tuple(_host(h) for h in data.get("hosts", ()))
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise PlacementError("two hosts in the inventory have the same name")
    measurer = data.get("measure_as") or next((h.name for h in hosts if h.identity), None)
    identity = next((h.identity for h in hosts if h.name == measurer), None)
    if data.get("measure_as") and identity is None:
        raise PlacementError(f"measure_as names {measurer!r}, which is no host with an identity")
    locations = tuple(_location(w, identity) for w in data.get("locations", ()))
    return Inventory(hosts, locations)


def _location(entry: Any, identity: Identity | None) -> Location:
    """A path or URL, or {"where": ..., "encrypt": true} for a share always spoken to encrypted."""
    if isinstance(entry, dict):
        extra = set(entry) - {"where", "encrypt"}
        if extra or "where" not in entry:
            raise PlacementError(f"a location needs where; unknown keys: {', '.join(sorted(extra)) or 'none'}")
        return Location(str(entry["where"]), identity=identity, encrypt=bool(entry.get("encrypt", False)))
    return Location(str(entry), identity=identity)


def _host(entry: dict[str, Any]) -> Host:
    extra = set(entry) - {"name", "username", "password_env", "credentials_file", "local"}
    if extra or "name" not in entry:
        raise PlacementError(f"a host needs a name; unknown keys: {', '.join(sorted(extra)) or 'none'}")
    if "password" in entry:
        raise PlacementError("passwords do not go in the inventory: use password_env or credentials_file")
    identity = None
    username = entry.get("username")
    if entry.get("credentials_file"):
        creds = read_credentials_file(entry["credentials_file"])
        identity = Identity(username or creds.get("username", ""), creds.get("password", ""))
    elif username:
        env = entry.get("password_env")
        password = os.environ.get(env, "") if env else ""
        if env and not password:
            raise PlacementError(f"host {entry['name']}: the environment variable {env} is not set")
        identity = Identity(username, password)
    return Host(str(entry["name"]), identity, bool(entry.get("local", False)))
