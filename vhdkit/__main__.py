"""``python -m vhdkit``: the same command line as ``vhdkit``."""

from vhdkit_cli.main import run

run()
