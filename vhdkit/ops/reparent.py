"""``vhdkit set-parent CHILD PARENT`` (Hyper-V's Set-VHD -ParentPath): point a differencing disk at
its parent's new place after the parent moved. The parent must be the very disk the child was
made against (its identity is checked first, as Set-VHD does); only the locator's paths change,
through the format's crash-safe metadata path, never the data or the identities."""

from __future__ import annotations

import os

from ..errors import RefusedError
from .create import _parent_paths
from .open import open_image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence


def set_parent(child: str | os.PathLike[str], parent: str | os.PathLike[str], *,
               allowed_parent_dirs: Sequence[str | os.PathLike[str]] | None = None) -> tuple[str, str | None]:
    """Point ``child``'s parent locator at ``parent``; returns (relative, absolute) as written."""
    with open_image(parent, allowed_parent_dirs=allowed_parent_dirs) as parent_disk:
        with open_image(child, "r+", resolve_parents=False) as child_disk:
            if not child_disk.parent_paths():
                raise RefusedError(f"{os.fspath(child)} is not a differencing disk: it has no parent to point at")
            why = child_disk.accepts_parent(parent_disk)
            if why is not None:
                raise RefusedError(f"{os.fspath(parent)} cannot be {os.fspath(child)}'s parent: {why}; nothing "
                                   "was changed")
            relative, absolute = _parent_paths(child, parent)
            child_disk.set_parent_paths(relative, absolute)
    return relative, absolute


__all__ = ["set_parent"]
