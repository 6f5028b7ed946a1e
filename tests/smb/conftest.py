"""The SMB tests' Samba: started once for the session on 127.0.0.1, stopped at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..conftest import unavailable
from .samba import Samba, SambaError

STATE = Path(os.environ.get("VHDKIT_SMB_STATE", "/tmp/vhdkit-test-smb"))


@pytest.fixture(scope="session")
def samba():
    # hostb (a second Hyper-V host's identity) may use share1 and small, not share2; "secure" is
    # a share the server lets no one use unencrypted
    server = Samba(STATE, port=int(os.environ.get("VHDKIT_SMB_PORT", "4445")), sized={"small": "64M"},
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
