"""The control socket's requests, checked field by field before anything runs.

A request is one line of JSON: a flat object with ``cmd`` and that command's fields. Anything
else is refused with a sentence, and nothing is started: an unknown command or field, a value of
the wrong type (``"false"`` is not a boolean), a number outside its range (``in_flight: -5``), or
nesting deeper than a flat request needs (which would otherwise make the JSON parser recurse
until Python gives up, and the client get no answer at all).
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from ..formats import NAMES
from ..units import KiB, MiB, TiB, parse_size
from .state import MODES, POLICIES, STATES

MAX_DEPTH = 3  # a request is an object of scalars; arrays or objects inside it are refused anyway
Check = Callable[[str, Any], Any]


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 4096 or "\0" in value:
        raise ValueError(f"{name} must be a non-empty string (a path or URL) of at most 4096 characters")
    return value


def _choice(choices: tuple[str, ...]) -> Check:
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    return check


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value


def _count(low: int, high: int) -> Check:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
        return value

    return check


def _size(low: int, high: int, *, power_of_two: bool = False) -> Check:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"{name} must be a size (bytes, or 64K, 1M ...), not {value!r}")
        size = parse_size(value)
        if not low <= size <= high or (power_of_two and size & (size - 1)):
            kind = "a power of two " if power_of_two else ""
            raise ValueError(f"{name} must be {kind}from {low} to {high} bytes, not {value!r}")
        return size

    return check


def _seconds(low: float, high: float) -> Check:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high:
            raise ValueError(f"{name} must be a number of seconds from {low} to {high}, not {value!r}")
        return float(value)

    return check


JOB_FIELDS: dict[str, Check] = {
    "mode": _choice(MODES),
    "speed": _size(64 * KiB, 1 * TiB),  # bytes per second
    "granularity": _size(512, 64 * MiB, power_of_two=True),
    "in_flight": _count(1, 64),
    "buf_size": _size(512, 64 * MiB),
    "on_source_error": _choice(POLICIES),
    "on_target_error": _choice(POLICIES),
    "convergence_window": _seconds(0.1, 3600),
    "auto_switch": _flag,
    "flush_interval": _seconds(0.001, 60),
}
COMMANDS: dict[str, dict[str, Check]] = {
    "status": {},
    "migrate": {"to": _text, "format": _choice(NAMES), **JOB_FIELDS},
    "wait": {"state": _choice(STATES), "timeout": _seconds(0, 86400)},
    "complete": {"timeout": _seconds(0, 86400), "delete_source": _flag, "verify": _flag},
    "cancel": {},
    "stop": {},
}
REQUIRED = {"migrate": ("to",)}


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """(command, its checked fields) of one request line; ValueError says what is wrong."""
    _refuse_deep_nesting(line)
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as e:  # RecursionError: belt and braces, see above
        raise ValueError(f"a request is one line of JSON: {e}") from None
    if not isinstance(request, dict):
        raise ValueError("a request is a JSON object")
    cmd = request.pop("cmd", None)
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        raise ValueError(f"unknown command {cmd!r} (one of {', '.join(COMMANDS)})")
    fields = COMMANDS[cmd]
    unknown = sorted(k for k in request if k not in fields)
    if unknown:
        raise ValueError(f"{cmd} takes no field {unknown[0]!r} (it takes: {', '.join(fields) or 'none'})")
    missing = [k for k in REQUIRED.get(cmd, ()) if request.get(k) is None]
    if missing:
        raise ValueError(f"{cmd} needs {missing[0]!r}")
    return cmd, {k: fields[k](k, v) for k, v in request.items() if v is not None}


def _refuse_deep_nesting(line: bytes) -> None:
    """Refuse nesting deeper than MAX_DEPTH before parsing (brackets inside strings aside)."""
    depth = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                raise ValueError(f"a request is a flat JSON object; this one nests deeper than {MAX_DEPTH} levels")
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1


__all__ = ["COMMANDS", "JOB_FIELDS", "parse_request"]
