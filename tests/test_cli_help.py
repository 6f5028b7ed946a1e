"""``--help`` laid out without argparse (cli/helptext.py) must be argparse's text, byte for byte:
every command and action, at widths from a narrow terminal to a wide one; and its word wrapping
must be textwrap's."""

from __future__ import annotations

import contextlib
import io
import random
import textwrap

import pytest

from vhdkit_cli.helptext import help_requested, wrap
from vhdkit_cli.main import COMMANDS, build_parser
from vhdkit_cli.parsing import ParserSpec, to_argparse

WIDTHS = (*range(20, 141, 3), 200)  # $COLUMNS: every third, where lines start to wrap differently


def every_help_line() -> list[list[str]]:
    """``[COMMAND [ACTION]] --help`` for the top level, every command, every action."""
    lines = [["--help"]]
    for command in COMMANDS:
        lines.append([command, "--help"])
        sub = build_parser([command]).subcommands
        assert sub is not None
        actions = sub.choices[command].subcommands
        if actions is not None:
            lines.extend([command, action, "--help"] for action in actions.choices)
    return lines


def argparse_help(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as ended:
        to_argparse(build_parser(argv)).parse_args(argv)
    assert ended.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize("columns", WIDTHS)
def test_every_help_is_argparses(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    lines = every_help_line()
    assert len(lines) > 30  # commands and their actions
    for argv in lines:
        ours = help_requested(build_parser(argv), argv, columns - 2)
        assert ours is not None, f"vhdkit {' '.join(argv)}: left to argparse"
        assert ours == argparse_help(argv), f"vhdkit {' '.join(argv)} at {columns} columns"


def test_what_it_does_not_lay_out_goes_to_argparse():
    spec = ParserSpec(prog="vhdkit")
    sub = spec.add_subparsers(dest="command")
    child = sub.add_parser("x", help="x")
    child.add_argument("--size", help="the size (default: %(default)s)", default=3)
    assert help_requested(spec, ["x", "--help"], 78) is None  # argparse expands %(default)s
    plain = sub.add_parser("y", help="y", epilog="after the options")
    assert help_requested(spec, ["y", "--help"], 78) is None  # an epilog: not laid out here
    plain.add_argument("n")
    assert help_requested(spec, ["y", "n", "--help"], 78) is None  # not "COMMAND... --help"
    assert help_requested(spec, ["--help", "x"], 78) is None


@pytest.mark.parametrize("seed", range(6))
def test_wrapping_is_textwraps(seed):
    """Texts of words, hyphenated words, em-dashes, long words, digits and punctuation."""
    rng = random.Random(seed)
    pieces = ["a", "bc", "write-blocking", "--allowed-parent-dir", "x--y", "1-2", "ab-c", "a-b-c-d",
              "e.g.", "(see", "it)", "word,", "3.5", "--", "-", "supercalifragilisticexpialidocious",
              "re-read-only", "_x-yz", "é-ü", "what?--no", "size-multiple=1MiB", "MiB-aligned", "ab-.cd",
              "xy-1ab", "ab--cd", "ab---cd", "q-_r", "ab-c-d", "a-bc-de", "ab-c-", "8--x", "x,--y", "--"]
    for _ in range(300):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randrange(1, 25)))
        for width in (5, 8, 11, 17, 24, 40, 60):
            for indent in ("", "  "):
                if width <= len(indent):
                    continue
                expected = textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent)
                assert wrap(text, width, indent) == expected, (text, width, indent)
