"""Options several commands share."""

from __future__ import annotations

import os

from vhdkit.ops.open import ALLOWED_DIRS_ENV
from vhdkit.storage.locks import FORCE_SHARE_ENV

from .parsing import Namespace, ParserSpec


def add_allowed_parent_dirs(p: ParserSpec) -> None:
    """``--allowed-parent-dir DIR`` for every command that follows a differencing chain."""
    p.add_argument("--allowed-parent-dir", action="append", metavar="DIR",
                   help="a folder (or smb:// URL) parents may lie in; repeatable. Default: "
                        f"{ALLOWED_DIRS_ENV} if set, else the image's own folder and those below it")


def apply_allowed_parent_dirs(args: Namespace) -> None:
    """The folders given on the command line hold for everything this process opens."""
    dirs = getattr(args, "allowed_parent_dir", None)
    if dirs:
        os.environ[ALLOWED_DIRS_ENV] = os.pathsep.join(dirs)


def add_force_share(p: ParserSpec) -> None:
    """``-U/--force-share`` for commands that only read images, as qemu-img's."""
    p.add_argument("-U", "--force-share", action="store_true",
                   help="read images other processes are writing (what is read may be inconsistent)")


def apply_force_share(args: Namespace) -> None:
    """Readers in this process take no lock that keeps writers out (storage.locks)."""
    if getattr(args, "force_share", False):
        os.environ[FORCE_SHARE_ENV] = "1"
