"""Helpers of the VM tests."""

from __future__ import annotations

import pwd
import shutil


def share_folder(samba, share: str, name: str) -> str:
    """A folder of the test's own on a share, owned as the server's files are; its smb:// URL."""
    folder = samba.share_path(share) / name
    folder.mkdir()
    shutil.chown(folder, pwd.getpwnam(samba.user).pw_uid)
    return f"smb://{samba.user}@127.0.0.1:{samba.port}/{share}/{name}"
