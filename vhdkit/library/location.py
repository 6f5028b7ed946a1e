"""Where the library's index lives unless told: $XDG_DATA_HOME/vhdkit/library.sqlite3, else under
~/.local/share. Its own module: `vhdkit library --help` names it without loading SQLite."""

from __future__ import annotations

import os


def default_db() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "vhdkit", "library.sqlite3")
