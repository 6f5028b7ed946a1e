"""Reading a host's facts file: vhdkit's own JSON (``vhdkit preflight collect``), or what the
PowerShell script wrote on a Hyper-V host (recognised by its schema field). Size and nesting are
bounded before the JSON parser sees the text."""

from __future__ import annotations

import json
import os
from typing import Any

from ..errors import PreflightError
from .facts import MAX_FILE, HostFacts, from_dict
from .hyperv import SCHEMA as HYPERV_SCHEMA
from .hyperv import read_export


def load(path: str | os.PathLike[str]) -> HostFacts:
    """A host's facts from a file: vhdkit's own JSON, or what the PowerShell script wrote on a
    Hyper-V host (recognised by its schema field and read by preflight.hyperv)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except OSError as e:
        raise PreflightError(f"{name}: cannot read it: {e.strerror}") from e
    if len(data) > MAX_FILE:
        raise PreflightError(f"{name}: larger than {MAX_FILE // (1024 * 1024)} MiB: not a host's facts")
    doc = parse_json(data, name)
    if isinstance(doc, dict) and doc.get("Schema") == HYPERV_SCHEMA:
        return read_export(doc, name)
    return from_dict(doc, name)


def parse_json(data: bytes, name: str) -> Any:
    """JSON from bytes (UTF-8, or UTF-16 with a BOM as PowerShell's Out-File writes it), with
    nesting bounded before the parser sees it (json recurses once per level)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise PreflightError(f"{name}: not valid UTF-16 ({e.reason} at byte {e.start})") from e
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise PreflightError(f"{name}: not valid UTF-8 ({e.reason} at byte {e.start})") from e
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:  # brackets outside strings: a cheap bound on nesting
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > 64:
                raise PreflightError(f"{name}: nested more than 64 levels deep: not a host's facts")
        elif ch in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except ValueError as e:
        raise PreflightError(f"{name}: not JSON ({e})") from e
