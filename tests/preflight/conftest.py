"""Fixtures of the preflight tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def smb2_server(samba):
    from ..smb.samba import Samba

    old = Samba(Path("/tmp/vhdkit-test-smb-2only"), host="127.0.0.3", port=samba.port, shares=("vms",),
                read_only=(), password="smb2-pw", encryption="off", max_protocol="SMB2")
    try:
        old.start(fresh=True)
    except Exception as e:  # noqa: BLE001 - 127.0.0.3 must be on lo: the server adds it if it can
        raise AssertionError(f"SMB 2 server: {e}") from e
    try:
        yield old
    finally:
        old.stop()
