"""The command line without argparse's start-up, with argparse as the authority.

Building argparse parsers is most of a small command's time: importing argparse brings re, enum,
gettext and locale, and every parser asks gettext for its translations on disk (three look-ups per
parser, each trying several locale names). A `vhdkit check disk.vhdx` spent about 15 ms there and
4 ms checking the disk.

So the commands describe their options to a recorder with argparse's own calls (``add_parser``,
``add_argument``, ``add_mutually_exclusive_group``, ``add_argument_group``, ``add_subparsers``,
``set_defaults``). `fast_parse` reads an ordinary command line from that record; anything it is
not sure of (``--help``, an unknown or abbreviated option, a value that starts with ``-``, a type
or choice that fails, a missing required option, two options of an exclusive group, positionals
argparse would split differently) makes it answer None, and `to_argparse` then replays the same
record into argparse, which prints the help or the error exactly as before. The two must agree on
everything `fast_parse` accepts; tests/test_cli_parsing.py holds them to it for every command.
``COMMAND... --help`` itself is laid out from the same record by cli/helptext.py, held to
argparse's text by tests/test_cli_help.py.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

#: formatter_class=RAW_DESCRIPTION: the description is printed as written (argparse's
#: RawDescriptionHelpFormatter), without making the commands import argparse to name it.
RAW_DESCRIPTION = "raw-description"

#: argparse's help option (add_help=True), which every parser has
HELP_FLAGS = ("-h", "--help")

_VALUE_ACTIONS = ("store", "append")
_FLAG_ACTIONS = ("store_true", "store_false", "store_const", "count")
_NOT_SURE = object()  # a value fast_parse leaves to argparse


class Namespace:
    """What the parser returns: one attribute per option (argparse.Namespace's behaviour)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __eq__(self, other: object) -> bool:
        return vars(self) == vars(other) if hasattr(other, "__dict__") else NotImplemented

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def __repr__(self) -> str:
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in sorted(vars(self).items())) + ")"


class Argument:
    """One add_argument call, with what argparse derives from it (dest, default)."""

    def __init__(self, flags: tuple[str, ...], kwargs: dict[str, Any], parser_defaults: dict[str, Any]) -> None:
        self.flags = flags
        self.kwargs = kwargs
        self.positional = not flags[0].startswith("-")
        self.action = kwargs.get("action", "store")
        self.nargs = kwargs.get("nargs")
        self.type: Callable[[str], Any] | None = kwargs.get("type")
        self.choices = kwargs.get("choices")
        self.required = kwargs.get("required", False)
        if self.positional:
            self.dest = kwargs.get("dest", flags[0])
        else:
            long = next((f for f in flags if f.startswith("--")), flags[0])
            self.dest = kwargs.get("dest") or long.lstrip("-").replace("-", "_")
        if "default" in kwargs:
            self.default = kwargs["default"]
        elif self.dest in parser_defaults:  # set_defaults before add_argument: argparse takes it
            self.default = parser_defaults[self.dest]
        else:
            self.default = {"store_true": False, "store_false": True}.get(self.action)

    def convert(self, text: str) -> Any:
        """The value of one word, or _NOT_SURE when argparse would refuse it (it says why)."""
        try:
            value = self.type(text) if self.type is not None else text
        except Exception:  # noqa: BLE001 - argparse turns each into its own message; it reruns the call
            return _NOT_SURE
        if self.choices is not None and value not in self.choices:
            return _NOT_SURE
        return value


class _Group:
    """An argument group or a mutually exclusive group: its arguments belong to the parser."""

    def __init__(self, parser: ParserSpec, kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.parser, self.kind, self.args, self.kwargs = parser, kind, args, kwargs
        self.members: list[Argument] = []

    def add_argument(self, *flags: str, **kwargs: Any) -> Argument:
        argument = self.parser._record_argument(self, flags, kwargs)
        self.members.append(argument)
        return argument


class Subcommands:
    """add_subparsers' result: its parsers by name, and which of them were described in full."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs
        self.dest: str | None = kwargs.get("dest")
        self.required = kwargs.get("required", False)
        self.choices: dict[str, ParserSpec] = {}

    def add_parser(self, name: str, **kwargs: Any) -> ParserSpec:
        parser = ParserSpec(**kwargs)
        self.choices[name] = parser
        return parser


class ParserSpec:
    """A recorded parser: every call in the order made, replayable into argparse."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        # (target, method, args, kwargs, what the call made): targets and results are this parser or its groups
        self.calls: list[tuple[Any, str, tuple[Any, ...], dict[str, Any], Any]] = []
        self.arguments: list[Argument] = []
        self.exclusive: list[_Group] = []
        self.defaults: dict[str, Any] = {}
        self.subcommands: Subcommands | None = None
        self.described = False  # anything beyond the name and help line: fast_parse may use it

    def _record_argument(self, target: Any, flags: tuple[str, ...], kwargs: dict[str, Any]) -> Argument:
        self.described = True
        argument = Argument(flags, kwargs, self.defaults)
        self.arguments.append(argument)
        self.calls.append((target, "add_argument", flags, kwargs, None))
        return argument

    def add_argument(self, *flags: str, **kwargs: Any) -> Argument:
        return self._record_argument(self, flags, kwargs)

    def add_mutually_exclusive_group(self, **kwargs: Any) -> _Group:
        group = _Group(self, "add_mutually_exclusive_group", (), kwargs)
        self.exclusive.append(group)
        self.calls.append((self, group.kind, (), kwargs, group))
        return group

    def add_argument_group(self, *args: Any, **kwargs: Any) -> _Group:
        group = _Group(self, "add_argument_group", args, kwargs)
        self.calls.append((self, group.kind, args, kwargs, group))
        return group

    def set_defaults(self, **kwargs: Any) -> None:
        self.described = True
        self.defaults.update(kwargs)
        for argument in self.arguments:  # as argparse: the parser's default wins over the argument's
            if argument.dest in kwargs:
                argument.default = kwargs[argument.dest]
        self.calls.append((self, "set_defaults", (), kwargs, None))

    def add_subparsers(self, **kwargs: Any) -> Subcommands:
        self.described = True
        self.subcommands = Subcommands(kwargs)
        self.calls.append((self, "add_subparsers", (), kwargs, self.subcommands))
        return self.subcommands


def argument_error(message: str) -> Exception:
    """The error a ``type=`` function raises for a bad word: argparse's ArgumentTypeError, whose
    message argparse prints as is (argparse is loaded only then)."""
    import argparse

    return argparse.ArgumentTypeError(message)


# -- the fast path ---------------------------------------------------------------------------------

def fast_parse(root: ParserSpec, argv: list[str]) -> Namespace | None:
    """argparse's result for an ordinary command line, or None: then argparse must parse it."""
    values: dict[str, Any] = {}
    parser, words = root, list(argv)
    while parser.subcommands is not None:  # "COMMAND [ACTION] options...": nothing before the word
        sub = parser.subcommands
        if not words or words[0] not in sub.choices or not sub.choices[words[0]].described:
            return None
        if any(not a.positional and a.action != "version" for a in parser.arguments) or parser.exclusive:
            return None  # a parser's own options could come before the word: not handled here
        values.update(_defaults(parser))
        if sub.dest is not None:
            values[sub.dest] = words[0]
        parser, words = sub.choices[words[0]], words[1:]
    leaf = _parse_leaf(parser, words)
    if leaf is None:
        return None
    values.update(leaf)
    return Namespace(**values)


def version_requested(root: ParserSpec, argv: list[str]) -> str | None:
    """`vhdkit --version ...`: the text argparse's version action would print, else None."""
    if argv and argv[0] in _flags_of(root, "version"):
        return next(a.kwargs["version"] for a in root.arguments if a.action == "version")
    return None


def _flags_of(parser: ParserSpec, action: str) -> set[str]:
    return {flag for a in parser.arguments if a.action == action for flag in a.flags}


def _defaults(parser: ParserSpec) -> dict[str, Any]:
    """What argparse puts in the namespace before reading a word: each argument's default, then
    the parser's set_defaults for names no argument has."""
    values = {a.dest: a.default for a in parser.arguments if a.action not in ("help", "version")}
    for dest, value in parser.defaults.items():
        values.setdefault(dest, value)
    return values


def _parse_leaf(parser: ParserSpec, words: list[str]) -> dict[str, Any] | None:
    by_flag = {flag: a for a in parser.arguments if not a.positional for flag in a.flags}
    positionals = [a for a in parser.arguments if a.positional]
    values = _defaults(parser)
    seen: set[Argument] = set()
    chunks: list[list[str]] = []  # runs of positional words, split by options
    after_option = True
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-"):
            if after_option:
                chunks.append([])
            chunks[-1].append(word)
            after_option = False
            i += 1
            continue
        after_option = True
        flag, equals, attached = word.partition("=") if word.startswith("--") else (word, "", "")
        argument = by_flag.get(flag)  # exact only: abbreviations, '-', '--' and '-5' go to argparse
        if argument is None:
            return None
        if argument.action in _VALUE_ACTIONS and argument.nargs is None:
            if equals:
                text = attached
            elif i + 1 < len(words) and not words[i + 1].startswith("-"):
                i += 1
                text = words[i]
            else:
                return None
            value = argument.convert(text)
            if value is _NOT_SURE:
                return None
            if argument.action == "append":
                previous = values.get(argument.dest)
                value = [*(previous or []), value]
            values[argument.dest] = value
        elif argument.action in _FLAG_ACTIONS and not equals:
            if argument.action == "count":
                values[argument.dest] = (values.get(argument.dest) or 0) + 1
            else:
                values[argument.dest] = {"store_true": True, "store_false": False}.get(
                    argument.action, argument.kwargs.get("const"))
        else:  # --help, --version inside a command, an option with nargs, or a flag given a value
            return None
        seen.add(argument)
        i += 1
    assigned = _assign_positionals(positionals, chunks)
    if assigned is None:
        return None
    for argument, texts in assigned:
        value = _positional_value(argument, texts)
        if value is _NOT_SURE:
            return None
        values[argument.dest] = value
        seen.add(argument)  # argparse counts a positional as seen even when it took no word
    for argument in parser.arguments:
        if argument.required and argument not in seen:
            return None
        if (argument not in seen and argument.type is not None and isinstance(argument.default, str)
                and values.get(argument.dest) is argument.default):
            converted = argument.convert(argument.default)  # argparse converts a string default too
            if converted is _NOT_SURE:
                return None
            values[argument.dest] = converted
    for group in parser.exclusive:
        # argparse counts only values that are not the default object itself (a small int can be):
        # two given, or a required group, is argparse's to judge
        if group.kwargs.get("required") or sum(1 for a in group.members if a in seen) > 1:
            return None
    return values


def _assign_positionals(positionals: list[Argument], chunks: list[list[str]]
                        ) -> list[tuple[Argument, list[str]]] | None:
    """Which words each positional takes, where argparse's answer is plain: fixed positionals in
    any number of runs, or at most one variable one ('?', '*', '+') with every word in one run."""
    words = [w for chunk in chunks for w in chunk]
    variable = [a for a in positionals if a.nargs is not None]
    if any(a.nargs not in ("?", "*", "+") for a in variable):
        return None
    fixed = len(positionals) - len(variable)
    if not variable:
        if len(words) != fixed:
            return None
        return [(a, [w]) for a, w in zip(positionals, words)]
    if len(variable) > 1 or len(chunks) > 1:
        return None
    spare = len(words) - fixed
    nargs = variable[0].nargs
    if spare < 0 or (nargs == "+" and spare < 1) or (nargs == "?" and spare > 1):
        return None
    assigned, at = [], 0
    for argument in positionals:
        take = spare if argument.nargs is not None else 1
        assigned.append((argument, words[at:at + take]))
        at += take
    return assigned


def _positional_value(argument: Argument, texts: list[str]) -> Any:
    if argument.nargs is None:
        return argument.convert(texts[0])
    if argument.nargs == "?" and not texts:
        default = argument.default
        return argument.convert(default) if isinstance(default, str) else default
    if argument.nargs == "*" and not texts and argument.default is not None:
        return argument.default
    values = [argument.convert(t) for t in texts]
    if any(v is _NOT_SURE for v in values):
        return _NOT_SURE
    return values[0] if argument.nargs == "?" else values


# -- argparse, for help and errors -------------------------------------------------------------------

def to_argparse(root: ParserSpec) -> Any:
    """The same parser in argparse: what it prints for --help and for a mistake is the reference."""
    import argparse

    class Parser(argparse.ArgumentParser):
        """Hands the help formatter the terminal's width: left to find it, argparse imports shutil
        (and with it zlib, bz2 and lzma) in every add_argument."""

        def __init__(self, *args: Any, formatter_class: Any = argparse.HelpFormatter, **kwargs: Any) -> None:
            if formatter_class == RAW_DESCRIPTION:
                formatter_class = argparse.RawDescriptionHelpFormatter
            super().__init__(*args, formatter_class=lambda prog: formatter_class(prog, width=help_width()),
                             **kwargs)

    parser = Parser(**root.kwargs)
    _replay(root, parser)
    return parser


def _replay(spec: ParserSpec, parser: Any) -> None:
    real: dict[int, Any] = {id(spec): parser}  # recorded object -> the argparse object made for it
    for target, method, args, kwargs, recorded in spec.calls:
        made = getattr(real[id(target)], method)(*args, **kwargs)
        if isinstance(recorded, Subcommands):
            made.required = recorded.required
            for name, child in recorded.choices.items():
                _replay(child, made.add_parser(name, **child.kwargs))
        elif recorded is not None:
            real[id(recorded)] = made


def help_width() -> int:
    """What argparse would take: $COLUMNS, else the terminal's width, else 80; less 2."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 80
    return max(columns, 20) - 2
