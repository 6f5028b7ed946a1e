"""Entry point: ``vhdkit COMMAND ...``. Each command module describes its own options (cli/parsing.py).

Only the command being run is imported and given its full parser; the others appear in the
command list with their one-line help. Start-up is most of a small command's time, and it
should not grow with every command added.
"""

from __future__ import annotations

import sys

import vhdkit
from vhdkit.errors import VhdkitError
from vhdkit.runtime_types import import_module

from .options import apply_allowed_parent_dirs, apply_force_share
from .parsing import HELP_FLAGS, Namespace, ParserSpec, fast_parse, help_width, to_argparse, version_requested

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

#: command -> (one-line help, "module" or "module:function" in this package that registers it)
COMMANDS = {
    "info": ("show what a disk image is", "info"),
    "create": ("create a new disk image", "create"),
    "convert": ("convert an image to another format or type", "convert"),
    "check": ("validate images: structure, leaks, parents, policies", "check"),
    "locations": ("free space and reach of storage locations", "placement:register_locations"),
    "place": ("choose a location for a VM's files and create them there", "placement:register_place"),
    "compact": ("give back space a dynamic VHD/VHDX no longer needs", "compact"),
    "merge": ("fold a differencing disk into its parent or a new disk", "merge"),
    "resize": ("change a disk's virtual size (grow; VHDX also shrinks)", "resize"),
    "set-parent": ("point a differencing disk at its moved parent", "set_parent"),
    "serve": ("export a disk over NBD, ready to be moved live", "serve"),
    "migrate": ("move a served disk while its guest writes", "migrate"),
    "preflight": ("will a live migration work? checks host facts", "preflight"),
    "vm": ("virtual machines: show a configuration, its disks and chains", "vm"),
    "netvirt": ("VM networks: CA/PA lookup, reachability, NVGRE/VXLAN", "netvirt"),
    "library": ("index the disk images in folders; blank disks", "library"),
    "vmbus": ("VMBus buffers: sizing, loss simulation, registry, ring bench", "vmbus"),
}


def build_parser(argv: Sequence[str] | None = None) -> ParserSpec:
    """The parser; with ``argv``, only the command it names is described in full (None: all)."""
    parser = ParserSpec(
        prog="vhdkit",
        description="Work with VHD and VHDX virtual disks: inspect, read, check, convert.",
    )
    parser.add_argument("--version", action="version", version=f"vhdkit {vhdkit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = _command_in(argv) if argv is not None else None  # argv without a command: none in full
    # "vhdkit COMMAND ...": nothing can show the other commands (the top level's help or choices), so
    # they are left out; in argparse each would cost a parser (and its gettext look-ups) for --help
    alone = bool(argv) and argv[0] == wanted
    for name, (help_text, where) in COMMANDS.items():
        if argv is None or name == wanted:
            module_name, _, function = where.partition(":")
            getattr(import_module(f"{__package__}.{module_name}"), function or "register")(sub, help_text)
        elif not alone:
            sub.add_parser(name, help=help_text)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command word, if argv has one of ours (the top-level options take no values)."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def parse(argv: list[str]) -> Namespace:
    """The options, read without argparse when the command line is ordinary (cli/parsing.py).
    ``--version`` and ``COMMAND... --help`` are printed here (cli/helptext.py lays out argparse's
    help text); argparse prints every other help and every mistake, and exits."""
    spec = build_parser(argv)
    version = version_requested(spec, argv)
    if version is not None:
        print(version)
        raise SystemExit(0)
    if argv and argv[-1] in HELP_FLAGS:  # help: laid out here when it can be (cli/helptext.py)
        from .helptext import help_requested

        text = help_requested(spec, argv, help_width())
        if text is not None:
            try:
                sys.stdout.write(text)
            except (AttributeError, OSError):  # as argparse's print_help: a closed output is no error
                pass
            raise SystemExit(0)
    args = fast_parse(spec, argv)
    if args is None:
        args = to_argparse(spec).parse_args(argv, namespace=Namespace())
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    apply_allowed_parent_dirs(args)
    apply_force_share(args)
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


def run() -> None:
    """The ``vhdkit`` command itself (pyproject.toml's script): main(), then the process ends.

    When nothing would run at exit (no atexit callback, no other thread), the process ends with
    os._exit once the output is flushed: the interpreter's teardown (freeing every module and
    object one by one) took 4-7 ms of a 40 ms ``vhdkit info`` (farm-bench, medians of 21), and
    nobody uses what it frees. Files are written with the operating system's calls or closed by
    ``with``; the kernel releases descriptors and locks as at any exit. Otherwise, or if the
    output cannot be flushed, the ordinary exit runs as before. In-process callers use main()."""
    try:
        code = main()
    except SystemExit as e:  # argparse's help, version and mistakes
        code = e.code
    if not isinstance(code, int):  # SystemExit's rules: None is 0; anything else is printed, 1
        if code is None:
            code = 0
        else:
            raise SystemExit(code)
    if _nothing_runs_at_exit():
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
        except (OSError, ValueError):
            pass  # the ordinary exit reports it as it always has
        else:
            import os

            os._exit(code)
    raise SystemExit(code)


def _nothing_runs_at_exit() -> bool:
    import atexit

    callbacks = getattr(atexit, "_ncallbacks", None)  # CPython's count; elsewhere: assume some
    if callbacks is None or callbacks():
        return False
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1


if __name__ == "__main__":
    run()
