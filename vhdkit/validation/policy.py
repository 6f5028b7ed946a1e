"""Policies for CI: what an image must be, beyond being sound. A broken rule is an error finding.

Rules are written as on the command line: ``format=vhdx``, ``type=fixed``, ``size-multiple=1MiB``,
``max-size=2TiB``, ``block-size=32MiB``, ``logical-sector-size=512``, ``no-parent``. The preset
``azure`` is a fixed VHD whose size is a whole number of MiB, at most 1023 GiB (the upload limit
specs/vhd.md records).
"""

from __future__ import annotations

from ..formats import NAMES
from ..runtime_types import NamedTuple
from ..units import GiB, format_size, parse_size
from .report import POLICY, Report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

AZURE_MAX_SIZE = 1023 * GiB
AZURE = ("format=vhd", "type=fixed", "size-multiple=1MiB", f"max-size={AZURE_MAX_SIZE}")

_CHOICES = {"format": NAMES, "type": ("fixed", "dynamic", "differencing")}
_SIZES = ("size-multiple", "max-size", "block-size", "logical-sector-size", "physical-sector-size")


class Rule(NamedTuple):
    name: str
    value: Any  # str for choices, int for sizes, None for no-parent

    def __str__(self) -> str:
        if self.value is None:
            return self.name
        return f"{self.name}={format_size(self.value) if isinstance(self.value, int) else self.value}"


def parse_rules(texts: list[str] | tuple[str, ...]) -> list[Rule]:
    """Rules from their written form; ValueError says which one is wrong and why."""
    rules = []
    for text in texts:
        if text == "azure":
            rules.extend(parse_rules(AZURE))
            continue
        name, sep, value = text.partition("=")
        name = name.strip().lower()
        if name == "no-parent" and not sep:
            rules.append(Rule(name, None))
        elif name in _CHOICES and sep:
            if value not in _CHOICES[name]:
                raise ValueError(f"{text!r}: {name} must be one of {', '.join(_CHOICES[name])}")
            rules.append(Rule(name, value))
        elif name in _SIZES and sep:
            try:
                size = parse_size(value)
            except ValueError as e:
                raise ValueError(f"{text!r}: {e}") from None
            if size <= 0:
                raise ValueError(f"{text!r}: the size must be positive")
            rules.append(Rule(name, size))
        else:
            known = ", ".join([*(f"{n}=..." for n in (*_CHOICES, *_SIZES)), "no-parent", "azure"])
            raise ValueError(f"unknown rule {text!r} (known: {known})")
    return rules


def apply_rules(rules: list[Rule], facts: dict[str, Any], report: Report) -> None:
    """Add an error finding for each rule ``facts`` (from the opened image) break."""
    for rule in rules:
        broken = _broken(rule, facts)
        if broken:
            report.add(POLICY, "policy", None, f"{rule}: {broken}")


def _broken(rule: Rule, facts: dict[str, Any]) -> str | None:
    name, value = rule
    if name in ("format", "type"):
        found = facts.get(name)
        return None if found == value else f"the image is {found}"
    if name == "no-parent":
        return None if facts.get("type") != "differencing" else "the image is a differencing disk"
    size = facts.get("virtual_size", 0)
    if name == "size-multiple":
        return None if size % value == 0 else (
            f"the virtual size {size} bytes is not a whole number of {format_size(value)} "
            f"(next: {-(-size // value) * value} bytes)")
    if name == "max-size":
        return None if size <= value else f"the virtual size {format_size(size)} is larger"
    key = name.replace("-", "_")
    found = facts.get(key)
    return None if found == value else f"the image has {key.replace('_', ' ')} {found}"


__all__ = ["AZURE", "AZURE_MAX_SIZE", "Rule", "apply_rules", "parse_rules"]
