"""Entry point: ``vhdkit COMMAND ...``. Each command module registers its own subparser."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import vhdkit
from vhdkit.errors import VhdkitError

from . import convert, create, info

COMMANDS = (info, create, convert)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vhdkit",
        description="Work with VHD and VHDX virtual disks: inspect, read, check, convert.",
    )
    parser.add_argument("--version", action="version", version=f"vhdkit {vhdkit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except VhdkitError as e:
        print(f"vhdkit: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vhdkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
