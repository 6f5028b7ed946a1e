"""Hyper-V 2012 / 2012 R2 virtual machine configurations: ``Virtual Machines/<GUID>.xml``
(specs/vm.md, "Hyper-V XML"). UTF-16 with a byte order mark, one ``<configuration>`` element; every
value is an element with a ``type`` attribute (string, integer, bool, bytes). Devices hang off
elements named ``_<instance guid>_``; ``manifest/vdevNNN`` says which device class each instance is.

Reading is bounded: the file's size, the nesting depth, the number of elements; a DOCTYPE or an
entity declaration (XML's way to make a small file expand without limit) is refused before parsing.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from typing import Any

from ..errors import VmConfigError
from .model import VmConfig
from .tree import config_from_tree

MAX_FILE = 16 * 1024 * 1024
MAX_ELEMENTS = 200_000
MAX_DEPTH = 32



def read(data: bytes, name: str) -> VmConfig:
    """The VM in an XML configuration's bytes (``name``: the file, for messages)."""
    root = _parse(data, name)
    if root.tag != "configuration":
        raise VmConfigError(f"{name}: the root element is <{root.tag[:40]}>, not <configuration>: not a Hyper-V "
                            "VM configuration")
    return config_from_tree(_tree(root, name, ""), name, "hyperv-xml")


def _tree(element: ET.Element, name: str, path: str) -> Any:
    """An element as the tree VMCX holds too: a dict of children, or a typed value."""
    if len(element):
        out: dict[str, Any] = {}
        for child in element:
            out[child.tag] = _tree(child, name, f"{path}/{child.tag}" if path else child.tag)
        return out
    kind, text = element.get("type"), element.text or ""
    if len(text) > 32768:
        raise VmConfigError(f"{name}: {path} is longer than 32 KiB")
    if kind in (None, "string"):
        return text if kind else ({} if not text.strip() else text)
    if kind == "integer":
        try:
            return int(text.strip())
        except ValueError:
            raise VmConfigError(f"{name}: {path} is not a whole number: {text.strip()[:40]!r}") from None
    if kind == "bool":
        if text.strip() not in ("True", "False"):
            raise VmConfigError(f"{name}: {path} is neither True nor False: {text.strip()[:40]!r}")
        return text.strip() == "True"
    if kind == "bytes":
        try:
            return base64.b64decode(text.strip(), validate=False)
        except ValueError:
            raise VmConfigError(f"{name}: {path} is not base64") from None
    raise VmConfigError(f"{name}: {path} has an unknown type {kind[:20]!r}")


def _parse(data: bytes, name: str) -> ET.Element:
    if len(data) > MAX_FILE:
        raise VmConfigError(f"{name}: larger than {MAX_FILE // 2**20} MiB: not a VM configuration")
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise VmConfigError(f"{name}: not valid {e.encoding.upper()} text ({e.reason} at byte {e.start})") from None
    head = text[:4096].lower()
    if "<!doctype" in text.lower() or "<!entity" in head:
        raise VmConfigError(f"{name}: a DOCTYPE or entity declaration: Hyper-V writes none, and it could expand "
                            "without limit; refused")
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)  # the declaration names UTF-16; the text is decoded already
    parser = ET.XMLPullParser(events=("start", "end"))
    depth = count = 0
    root: ET.Element | None = None
    try:
        for start in range(0, len(text), 1 << 16):
            parser.feed(text[start : start + (1 << 16)])
            for event, element in parser.read_events():
                if event == "start":
                    depth += 1
                    count += 1
                    root = element if root is None else root
                    if depth > MAX_DEPTH:
                        raise VmConfigError(f"{name}: nested more than {MAX_DEPTH} elements deep")
                    if count > MAX_ELEMENTS:
                        raise VmConfigError(f"{name}: more than {MAX_ELEMENTS:,} elements")
                else:
                    depth -= 1
        parser.close()
    except ET.ParseError as e:
        raise VmConfigError(f"{name}: not well-formed XML ({e})") from None
    if root is None:
        raise VmConfigError(f"{name}: empty")
    return root
