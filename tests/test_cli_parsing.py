"""The command line's fast path (cli/parsing.py) against argparse, the authority.

For every command and action, command lines are made from what the command declares (each
option alone, in both spellings, repeated, before and after the positionals) and read both ways:
where the fast path answers, its answer must be argparse's. What it must leave to argparse
(help, abbreviations, bad values, conflicts) is checked to reach argparse's messages.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from vhdkit_cli.main import COMMANDS, build_parser, main
from vhdkit_cli.parsing import Argument, Namespace, ParserSpec, fast_parse, to_argparse

GUID = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
#: a word each ``type=`` accepts, by the function's name
SAMPLE_BY_TYPE = {"int": "7", "float": "2.5", "_size": "16G", "parse_size": "1T", "_positive_int": "3", "UUID": GUID}


def _leaves(prefix: list[str], parser: ParserSpec) -> Iterator[tuple[list[str], ParserSpec]]:
    if parser.subcommands is None:
        yield prefix, parser
        return
    for name, child in parser.subcommands.choices.items():
        yield from _leaves([*prefix, name], child)


def _word(argument: Argument) -> str:
    if argument.choices is not None:
        return str(list(argument.choices)[-1])
    if argument.type is None:
        return f"w-{argument.dest}"
    name = getattr(argument.type, "__name__", "")
    assert name in SAMPLE_BY_TYPE, f"add a sample word for type {name!r} of {argument.flags}"
    return SAMPLE_BY_TYPE[name]


def _positional_words(parser: ParserSpec, extra: int = 0) -> list[str]:
    words = []
    for a in parser.arguments:
        if a.positional:
            count = {None: 1, "?": min(extra, 1), "*": extra, "+": 1 + extra}[a.nargs]
            words += [f"{a.dest}{i}" for i in range(count)]
    return words


def _option_uses(argument: Argument) -> Iterator[list[str]]:
    flag = argument.flags[-1]
    if argument.action in ("store", "append"):
        word = _word(argument)
        yield [flag, word]
        yield [f"{flag}={word}"] if flag.startswith("--") else [argument.flags[0], word]
        if argument.action == "append":
            yield [flag, word, argument.flags[0], word]
        if argument.choices is not None:
            yield from ([flag, str(choice)] for choice in argument.choices)
    else:
        yield [flag]


def _command_lines() -> Iterator[list[str]]:
    for command in COMMANDS:
        for prefix, parser in _leaves([command], build_parser([command]).subcommands.choices[command]):
            required = [w for a in parser.arguments if a.required for w in (a.flags[-1], _word(a))]
            for extra in (0, 1, 2):
                positionals = _positional_words(parser, extra)
                yield [*prefix, *positionals, *required]
                yield [*prefix, *required, *positionals]
            for argument in parser.arguments:
                if argument.positional or argument.required:
                    continue
                for use in _option_uses(argument):
                    yield [*prefix, *_positional_words(parser), *required, *use]
                    yield [*prefix, *use, *required, *_positional_words(parser, 1)]


def _argparse(argv: list[str]) -> Namespace | int:
    try:
        return to_argparse(build_parser(argv)).parse_args(argv, namespace=Namespace())
    except SystemExit as e:
        return int(e.code or 0)


def test_the_fast_path_agrees_with_argparse_on_every_command_line_it_reads(capsys):
    read = deferred = 0
    for argv in _command_lines():
        fast = fast_parse(build_parser(argv), argv)
        if fast is None:
            deferred += 1
            continue
        read += 1
        reference = _argparse(argv)
        assert not isinstance(reference, int), (argv, capsys.readouterr().err)
        assert vars(fast) == vars(reference), argv
    # the fast path must be the usual path: it reads nearly all of these ordinary lines
    assert read > 500 and deferred < read / 10, (read, deferred)


@pytest.mark.parametrize("argv,says", [
    (["check", "--help"], "usage: vhdkit check"),
    (["check", "--js", "x.vhdx"], None),  # an abbreviation: argparse's to accept
    (["info"], "the following arguments are required: image"),
    (["create", "x.vhdx", "--size", "lots"], "argument --size"),
    (["create", "x.vhdx", "--size", "1G", "--blank", "small"], "not allowed with argument"),
    (["create", "x.vhdx", "--disk-id", "nope"], "invalid UUID value"),
    (["convert", "a", "b", "--type", "sparse"], "invalid choice"),
    (["resize", "x.vhdx", "--size", "-1G"], "expected one argument"),
    (["serve", "x.vhdx", "--nbd", "unix:/s", "--max-clients", "0"], "must be at least 1"),
    (["check", "a.vhdx", "--json", "b.vhdx"], "unrecognized arguments: b.vhdx"),
    (["vm", "--json", "show", "x"], None),
    (["nosuch"], "invalid choice"),
    (["check", "--json=yes", "x"], "ignored explicit argument"),
])
def test_what_the_fast_path_leaves_reaches_argparse(argv, says, capsys):
    assert fast_parse(build_parser(argv), argv) is None
    reference = _argparse(argv)
    output = capsys.readouterr()
    if says is not None:
        assert says in output.out + output.err, output
        # and main() passes argparse's word on: help exits 0, a mistake 2
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == reference


def test_split_positionals_and_string_defaults_read_as_argparse_reads_them():
    argv = ["convert", "a.vhd", "-O", "vhdx", "b.vhdx"]  # fixed positionals around an option
    fast = fast_parse(build_parser(argv), argv)
    assert fast is not None and (fast.source, fast.target, fast.format, fast.type) == ("a.vhd", "b.vhdx", "vhdx", "dynamic")
    assert vars(fast) == vars(_argparse(argv))
    spec = ParserSpec(prog="t")
    spec.add_argument("--n", type=int, default="5")  # argparse converts a string default
    spec.add_argument("items", nargs="*", default=None)
    assert vars(fast_parse(spec, [])) == vars(_argparse_of(spec, [])) == {"n": 5, "items": []}


def test_actions_no_command_uses_yet_read_as_argparse_reads_them():
    spec = ParserSpec(prog="t")
    spec.set_defaults(level="parent", colour="red")
    actions = spec.add_subparsers(dest="action")
    leaf = actions.add_parser("go")
    leaf.add_argument("--quiet", action="store_false", dest="loud")
    leaf.add_argument("-v", action="count")
    leaf.add_argument("--mode", action="store_const", const="fast")
    leaf.set_defaults(level="leaf")
    for argv in (["go"], ["go", "--quiet", "-v", "-v", "--mode"]):
        fast = fast_parse(spec, argv)
        assert fast is not None and vars(fast) == vars(_argparse_of(spec, argv)), argv
    assert vars(fast_parse(spec, ["go", "-v"])) == {"level": "leaf", "colour": "red", "action": "go", "loud": True,
                                                     "v": 1, "mode": None}


def _argparse_of(spec: ParserSpec, argv: list[str]) -> Any:
    return to_argparse(spec).parse_args(argv, namespace=Namespace())
