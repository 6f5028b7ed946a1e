"""``--help`` without argparse: the text argparse's HelpFormatter prints, made from the record.

A help through argparse cost 20-35 ms above the interpreter, against 15-22 for a whole ``info``:
importing argparse (with re, enum, gettext and locale), building the parser (gettext looks for
translations three times a parser), and textwrap. This module lays out the same text from the
ParserSpec the command recorded: usage (wrapped as argparse wraps it), description, one section
per argument group, each option's invocation and help (wrapped as textwrap wraps them).

argparse stays the reference: tests/test_cli_help.py holds every command's help, at several
widths, to argparse's text, byte for byte. What this module does not lay out itself (a ``%`` in a
help text, a parser option or argument keyword no command uses yet) makes it answer None, and
argparse prints the help as before. It is asked only for ``vhdkit [COMMAND...] -h|--help``; with
anything else on the line argparse decides what comes first.
"""

from __future__ import annotations

from .parsing import HELP_FLAGS, RAW_DESCRIPTION, Argument, ParserSpec, Subcommands, _Group

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_PARSER_KEYWORDS = {"prog", "description", "formatter_class", "help"}
_ARGUMENT_KEYWORDS = {"action", "help", "metavar", "default", "choices", "type", "required", "nargs", "dest", "version"}
_NO_VALUE = {"store_true": 0, "store_false": 0, "store_const": 0, "count": 0, "version": 0, "help": 0}
_BUILT_IN_HELP = {"help": "show this help message and exit", "version": "show program's version number and exit"}


class _Action:
    """What the layout reads of one argument (argparse's Action, for help only)."""

    def __init__(self, option_strings: list[str], dest: str, nargs: Any, help: str | None,
                 metavar: str | None = None, choices: Any = None, required: bool = False) -> None:
        self.option_strings, self.dest, self.nargs, self.help = option_strings, dest, nargs, help
        self.metavar, self.choices, self.required = metavar, choices, required
        self.subactions: list[_Action] = []


class _Parser:
    """A parser as argparse holds it for help: actions in order, sections, exclusive groups."""

    def __init__(self, spec: ParserSpec, prog: str) -> None:
        formatter = spec.kwargs.get("formatter_class", RAW_DESCRIPTION)  # argparse's default, or raw
        if set(spec.kwargs) - _PARSER_KEYWORDS or formatter != RAW_DESCRIPTION:
            raise _Unknown
        self.prog = prog
        self.description: str | None = spec.kwargs.get("description")
        self.raw = spec.kwargs.get("formatter_class") == RAW_DESCRIPTION
        help_action = _Action(list(HELP_FLAGS), "help", 0, _BUILT_IN_HELP["help"])
        self.actions = [help_action]
        positionals: list[_Action] = []
        optionals = [help_action]
        self.sections: list[tuple[str, str | None, list[_Action]]] = [
            ("positional arguments", None, positionals), ("options", None, optionals)]
        self.exclusive: list[tuple[bool, list[_Action]]] = []
        self.subcommands: Subcommands | None = None
        sections: dict[int, list[_Action]] = {}
        exclusive: dict[int, list[_Action]] = {}
        arguments = iter(spec.arguments)  # one per add_argument call, in the same order
        for target, method, args, kwargs, made in spec.calls:
            if method == "add_argument":
                action = _action_of(next(arguments))
                self.actions.append(action)
                if isinstance(target, _Group) and target.kind == "add_argument_group":
                    sections[id(target)].append(action)
                else:
                    (optionals if action.option_strings else positionals).append(action)
                    if isinstance(target, _Group):
                        exclusive[id(target)].append(action)
            elif method == "add_argument_group":
                title = args[0] if args else kwargs.get("title")
                description = args[1] if len(args) > 1 else kwargs.get("description")
                if len(args) > 2 or set(kwargs) - {"title", "description"}:
                    raise _Unknown
                sections[id(made)] = []
                self.sections.append((title, description, sections[id(made)]))
            elif method == "add_mutually_exclusive_group":
                if set(kwargs) - {"required"}:
                    raise _Unknown
                exclusive[id(made)] = []
                self.exclusive.append((bool(kwargs.get("required")), exclusive[id(made)]))
            elif method == "add_subparsers":
                if set(kwargs) - {"dest", "metavar", "required"} or positionals:
                    raise _Unknown  # a title makes a section; positionals before it go in the prog
                action = _Action([], kwargs.get("dest") or "==SUPPRESS==", "A...", None, kwargs.get("metavar"))
                for name, child in made.choices.items():
                    if "help" in child.kwargs:
                        action.subactions.append(_Action([], name, None, child.kwargs["help"], name))
                self.subcommands = made
                self.actions.append(action)
                positionals.append(action)
            elif method != "set_defaults":
                raise _Unknown


class _Unknown(Exception):
    """Something argparse lays out and this module does not."""


def _action_of(argument: Argument) -> _Action:
    kwargs = argument.kwargs
    if set(kwargs) - _ARGUMENT_KEYWORDS or argument.action not in ("store", "append", *_NO_VALUE):
        raise _Unknown
    help_text = kwargs.get("help", _BUILT_IN_HELP.get(argument.action))
    if help_text is not None and ("%" in help_text or help_text == "==SUPPRESS=="):
        raise _Unknown  # argparse expands %(...)s; SUPPRESS hides
    nargs = _NO_VALUE.get(argument.action, argument.nargs)
    if nargs not in (None, 0, "?", "*", "+"):
        raise _Unknown
    metavar = kwargs.get("metavar")
    if metavar is not None and not isinstance(metavar, str):
        raise _Unknown
    return _Action(list(argument.flags) if not argument.positional else [], argument.dest, nargs, help_text,
                   metavar, argument.choices, bool(argument.required))


# -- which parser, and its name ---------------------------------------------------------------------

def help_requested(root: ParserSpec, argv: list[str], width: int) -> str | None:
    """The help text for ``[COMMAND ...] -h|--help``, or None (argparse's to print)."""
    if not argv or argv[-1] not in HELP_FLAGS:
        return None
    spec, prog = root, root.kwargs.get("prog")
    if prog is None:
        return None
    try:
        parser = _Parser(spec, prog)
        for word in argv[:-1]:
            sub = parser.subcommands
            if sub is None or word not in sub.choices or not sub.choices[word].described:
                return None
            spec = sub.choices[word]
            parser = _Parser(spec, spec.kwargs.get("prog") or f"{parser.prog} {word}")
        if parser.description and "%(prog)" in parser.description:
            return None
        return _Layout(parser, width).text()
    except _Unknown:
        return None


# -- the layout (argparse.HelpFormatter's) ----------------------------------------------------------

class _Layout:
    def __init__(self, parser: _Parser, width: int) -> None:
        self.parser = parser
        self.width = width
        self.max_help_position = min(24, max(width - 20, 4))

    def text(self) -> str:
        p = self.parser
        out = [self.usage()]
        if p.description is not None:
            out.append(self.paragraph(p.description, 0))
        # One help column for every section: the longest invocation anywhere, in its section's indent
        widest = max((len(self.invocation(x)) + 2 for _, _, actions in p.sections for a in actions
                      for x in (a, *a.subactions)), default=0)
        position = min(widest + 2, self.max_help_position)
        for title, description, actions in p.sections:
            body = []
            if description is not None:
                body.append(self.paragraph(description, 2))
            body.extend(self.entry(a, 2, position) for a in actions)
            if "".join(body):
                out.append(f"\n{title}:\n" + "".join(body) + "\n")
        text = "".join(out)
        while "\n\n\n" in text:
            text = text.replace("\n\n\n", "\n\n")
        return text.strip("\n") + "\n"

    # -- usage ---------------------------------------------------------------------------------
    def usage(self) -> str:
        p, prefix = self.parser, "usage: "
        optionals = [a for a in p.actions if a.option_strings]
        positionals = [a for a in p.actions if not a.option_strings]
        whole = " ".join(s for s in (p.prog, self.actions_usage(optionals + positionals)) if s)
        if len(prefix) + len(whole) > self.width:
            opt_parts = _usage_parts(self.actions_usage(optionals))
            pos_parts = _usage_parts(self.actions_usage(positionals))
            if len(prefix) + len(p.prog) <= 0.75 * self.width:
                indent = " " * (len(prefix) + len(p.prog) + 1)
                if opt_parts:
                    lines = self.wrap_parts([p.prog, *opt_parts], indent, prefix) + self.wrap_parts(pos_parts, indent)
                elif pos_parts:
                    lines = self.wrap_parts([p.prog, *pos_parts], indent, prefix)
                else:
                    lines = [p.prog]
            else:
                indent = " " * len(prefix)
                lines = self.wrap_parts(opt_parts + pos_parts, indent)
                if len(lines) > 1:
                    lines = self.wrap_parts(opt_parts, indent) + self.wrap_parts(pos_parts, indent)
                lines = [p.prog, *lines]
            whole = "\n".join(lines)
        return f"{prefix}{whole}\n\n"

    def wrap_parts(self, parts: list[str], indent: str, prefix: str | None = None) -> list[str]:
        lines: list[str] = []
        line: list[str] = []
        length = len(prefix if prefix is not None else indent) - 1
        for part in parts:
            if line and length + 1 + len(part) > self.width:
                lines.append(indent + " ".join(line))
                line, length = [], len(indent) - 1
            line.append(part)
            length += len(part) + 1
        if line:
            lines.append(indent + " ".join(line))
        if prefix is not None:
            lines[0] = lines[0][len(indent):]
        return lines

    def actions_usage(self, actions: list[_Action]) -> str:
        marks: dict[int, str] = {}
        grouped: set[int] = set()
        for required, members in self.parser.exclusive:
            if not members or members[0] not in actions:
                continue
            start = actions.index(members[0])
            end = start + len(members)
            if actions[start:end] != members:
                continue
            grouped.update(id(a) for a in members)
            if not required or len(members) > 1:
                opening, closing = ("(", ")") if required else ("[", "]")
                marks[start] = marks[start] + " " + opening if start in marks else opening
                marks[end] = marks[end] + closing if end in marks else closing
            for i in range(start + 1, end):
                marks[i] = "|"
        parts: list[str] = []
        for action in actions:
            if not action.option_strings:
                part = self.args(action, action.dest)
                if id(action) in grouped and part[:1] == "[" and part[-1:] == "]":
                    part = part[1:-1]
            else:
                part = action.option_strings[0]
                if action.nargs != 0:
                    part += " " + self.args(action, action.dest.upper())
                if not action.required and id(action) not in grouped:
                    part = f"[{part}]"
            parts.append(part)
        for i in sorted(marks, reverse=True):
            parts[i:i] = [marks[i]]
        return _tidy_brackets(" ".join(parts))

    # -- one argument --------------------------------------------------------------------------
    def metavar(self, action: _Action, default: str) -> str:
        if action.metavar is not None:
            return action.metavar
        if action.choices is not None:
            return "{" + ",".join(str(c) for c in action.choices) + "}"
        return default

    def args(self, action: _Action, default: str) -> str:
        name = self.metavar(action, default)
        return {None: name, "?": f"[{name}]", "*": f"[{name} ...]", "+": f"{name} [{name} ...]",
                "A...": f"{name} ..."}[action.nargs]

    def invocation(self, action: _Action) -> str:
        if not action.option_strings:
            return self.metavar(action, action.dest)
        if action.nargs == 0:
            return ", ".join(action.option_strings)
        value = self.args(action, action.dest.upper())
        return ", ".join(f"{flag} {value}" for flag in action.option_strings)

    def entry(self, action: _Action, indent: int, position: int) -> str:
        help_width = max(self.width - position, 11)
        room = position - indent - 2
        head = self.invocation(action)
        if not action.help:
            out = [" " * indent + head + "\n"]
        elif len(head) <= room:
            out = [" " * indent + head.ljust(room) + "  "]
            first = 0
        else:
            out = [" " * indent + head + "\n"]
            first = position
        if action.help and action.help.strip():
            lines = wrap(_squash(action.help), help_width)
            out.append(" " * first + lines[0] + "\n")
            out.extend(" " * position + line + "\n" for line in lines[1:])
        elif not out[0].endswith("\n"):
            out.append("\n")
        out.extend(self.entry(sub, indent + 2, position) for sub in action.subactions)
        return "".join(out)

    def paragraph(self, text: str, indent: int) -> str:
        pad = " " * indent
        if self.parser.raw:
            return "".join(pad + line for line in text.splitlines(keepends=True)) + "\n\n"
        lines = wrap(_squash(text), max(self.width - indent, 11), pad)
        return "\n".join(lines) + "\n\n"


def _squash(text: str) -> str:
    """Runs of ASCII whitespace made one space, none at the ends (argparse's re.ASCII \\s+)."""
    for c in "\t\n\r\x0b\x0c":
        text = text.replace(c, " ")
    return " ".join(word for word in text.split(" ") if word)


def _usage_parts(text: str) -> list[str]:
    """argparse's pieces of a usage line: a bracketed group ``[...]``/``(...)`` ending where a
    space or the end follows its closing brackets, else a run of non-spaces."""
    parts, i = [], 0
    while i < len(text):
        if text[i] == " ":
            i += 1
            continue
        end = _bracketed(text, i) if text[i] in "[(" else None
        if end is None:
            end = text.find(" ", i)
            end = len(text) if end < 0 else end
        parts.append(text[i:end])
        i = end
    return parts


def _bracketed(text: str, start: int) -> int | None:
    """Where ``\\(.*?\\)+(?=\\s|$)`` (or with brackets) matching at ``start`` ends, or None."""
    closing = ")" if text[start] == "(" else "]"
    for j in range(start + 1, len(text)):
        if text[j] != closing:
            continue
        run = j
        while run < len(text) and text[run] == closing:
            run += 1
        for end in range(run, j, -1):  # the longest run of closings first, as the greedy + tries
            if end == len(text) or text[end].isspace():
                return end
    return None


def _tidy_brackets(text: str) -> str:
    """argparse's clean-up of a usage line: no space inside brackets, no empty brackets."""
    for opening in "[(":
        text = text.replace(opening + " ", opening)
    for closing in "])":
        text = text.replace(" " + closing, closing)
    out, i = [], 0
    while i < len(text):
        if text[i] in "[(":
            j = i + 1
            while j < len(text) and text[j] == " ":
                j += 1
            if j < len(text) and text[j] in "])":
                i = j + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out).strip()


# -- textwrap.wrap's lines (width, hyphenated words, long words) ------------------------------------

def _letter(c: str) -> bool:  # [^\d\W]: a word character that is no digit
    return (c.isalnum() or c == "_") and not c.isdecimal()


def _word_punct(c: str) -> bool:  # [\w!"'&.,?]
    return c.isalnum() or c in "_!\"'&.,?"


def _dashes_then_word(text: str, at: int) -> bool:  # (?=-{2,}\w)
    end = at
    while end < len(text) and text[end] == "-":
        end += 1
    return end - at >= 2 and end < len(text) and (text[end].isalnum() or text[end] == "_")


def _splits_after_hyphen(text: str, j: int) -> bool:
    """Whether a word ends just after the hyphen at ``j``: after two letters (``ab-``) or after
    ``a-b-``, and before a letter, an optional hyphen and a letter (textwrap's "hyphenated word":
    ``-(?:(?<=lt{2}-)|(?<=lt-lt-))(?=lt-?lt)``)."""
    if text[j] != "-":
        return False

    def at(k: int) -> bool:  # a letter at k
        return 0 <= k < len(text) and _letter(text[k])

    before = (at(j - 1) and at(j - 2)) or (at(j - 1) and j >= 2 and text[j - 2] == "-" and at(j - 3))
    after = at(j + 1) and (at(j + 2) or (j + 2 < len(text) and text[j + 2] == "-" and at(j + 3)))
    return bool(before and after)


def _chunks(text: str) -> list[str]:
    """textwrap's chunks (TextWrapper.wordsep_re) of a text of single spaces: runs of spaces; an
    em-dash (two or more hyphens between word characters); and words, each ending at a space, the
    end, after the hyphen of a hyphenated word (``write-`` ``blocking``), or before an em-dash."""
    chunks, i, n = [], 0, len(text)
    while i < n:
        j = i + 1
        if text[i] == " ":
            while j < n and text[j] == " ":
                j += 1
        elif i and _word_punct(text[i - 1]) and _dashes_then_word(text, i):
            while text[j] == "-":
                j += 1
        else:  # a word: the shortest run of non-spaces that one of the three endings closes
            while j < n and text[j] != " ":
                if _splits_after_hyphen(text, j):
                    j += 1
                    break
                if _word_punct(text[j - 1]) and _dashes_then_word(text, j):
                    break
                j += 1
        chunks.append(text[i:j])
        i = j
    return chunks


def wrap(text: str, width: int, indent: str = "") -> list[str]:
    """textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent) for a text of
    single spaces without leading or trailing ones (what argparse hands it)."""
    chunks = _chunks(text)[::-1]
    lines: list[str] = []
    room = width - len(indent)
    while chunks:
        line: list[str] = []
        length = 0
        if chunks[-1] == " " * len(chunks[-1]) and lines:
            chunks.pop()
        while chunks and length + len(chunks[-1]) <= room:
            length += len(chunks[-1])
            line.append(chunks.pop())
        if chunks and len(chunks[-1]) > room:
            space = room - length if room >= 1 else 1
            chunk, end = chunks[-1], space
            if len(chunk) > space:
                hyphen = chunk.rfind("-", 0, space)
                if hyphen > 0 and chunk[:hyphen].strip("-"):
                    end = hyphen + 1
            line.append(chunk[:end])
            chunks[-1] = chunk[end:]
        if line and line[-1] == " " * len(line[-1]):
            line.pop()
        if line:
            lines.append(indent + "".join(line))
    return lines
