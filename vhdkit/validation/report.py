"""What a check found: findings with a severity, and the verdict and exit code they add up to.

Exit codes follow ``qemu-img check`` where it has one: 0 clean, 2 corruption, 3 leaks only
(allocated space that nothing references), 1 the check could not run or could not finish (a
differencing disk whose parent is missing is "incomplete": its chain cannot be checked, which is
not damage). vhdkit adds 4: the image is sound but breaks a rule the caller required (``--require``,
``--azure``), so a CI job can tell a policy it set from damage. Warnings (damage the image survives,
such as one bad copy of a structure kept twice) leave the verdict clean, as qemu-img leaves them,
unless the check is ``strict``: then they count as corruption.

    verdict       exit  meaning
    clean         0     nothing wrong (warnings aside, unless strict)
    not checked   1     the image could not be opened or read at all
    in use        1     another process writes it (or forbids readers): try again when it is done
    incomplete    1     part of it could not be checked (a parent not found)
    corrupt       2     damage: a structure is wrong (or, strict, damaged but survivable)
    leaks         3     only space nothing references
    policy        4     sound, but a required rule is broken
"""

from __future__ import annotations
from ..runtime_types import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


ERROR = "error"  # the image is corrupt
LEAK = "leak"  # space in the file that nothing references; data is intact
WARNING = "warning"  # damage the image survives, or something readers disagree on
POLICY = "policy"  # the image is sound but breaks a rule the caller required
INCOMPLETE = "incomplete"  # something the check needs is missing (a differencing disk's parent)

EXIT_CLEAN, EXIT_FAILED, EXIT_CORRUPT, EXIT_LEAKS, EXIT_POLICY = 0, 1, 2, 3, 4
EXIT_CODES = {"clean": EXIT_CLEAN, "not checked": EXIT_FAILED, "in use": EXIT_FAILED, "incomplete": EXIT_FAILED,
              "corrupt": EXIT_CORRUPT, "leaks": EXIT_LEAKS, "policy": EXIT_POLICY}


class Finding(NamedTuple):
    severity: str
    structure: str  # as the spec names it: "VHDX header 1", "BAT entry 7", "VHD footer", "policy"
    offset: int | None  # file offset of the structure, when it has one
    message: str  # a sentence a person understands
    length: int | None = None  # bytes concerned, where that is a number (a leak's extent)

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()

    def __str__(self) -> str:
        where = f" at {self.offset:#x}" if self.offset is not None else ""
        return f"{self.severity}: {self.structure}{where}: {self.message}"


class Report:
    """The findings for one image, and what ``repair`` changed."""

    def __init__(self, path: str, *, strict: bool = False) -> None:
        self.path = path
        self.strict = strict  # warnings count as corruption
        self.format: str | None = None
        self.findings: list[Finding] = []
        self.repairs: list[str] = []  # one sentence per change made, in order
        self.failure: str | None = None  # why the check could not run at all
        self.in_use = False  # it could not run because another process writes the image
        self.leaked_bytes = 0
        self.seconds = 0.0  # how long the check took

    def add(self, severity: str, structure: str, offset: int | None, message: str,
            length: int | None = None) -> Finding:
        finding = Finding(severity, structure, offset, message, length)
        self.findings.append(finding)
        return finding

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def verdict(self) -> str:
        if self.failure is not None:
            return "in use" if self.in_use else "not checked"
        if self.count(ERROR) or (self.strict and self.count(WARNING)):
            return "corrupt"
        if self.count(INCOMPLETE):
            return "incomplete"
        if self.count(POLICY):
            return "policy"
        if self.count(LEAK):
            return "leaks"
        return "clean"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "failure": self.failure,
            "errors": self.count(ERROR),
            "leaks": self.count(LEAK),
            "warnings": self.count(WARNING),
            "policy": self.count(POLICY),
            "incomplete": self.count(INCOMPLETE),
            "strict": self.strict,
            "leaked_bytes": self.leaked_bytes,
            "seconds": round(self.seconds, 6),
            "findings": [f.as_dict() for f in self.findings],
            "repairs": list(self.repairs),
        }


def worst_exit_code(reports: list[Report]) -> int:
    """One exit code for several images: could-not-check, then corrupt, policy, leaks, clean."""
    codes = {r.exit_code for r in reports}
    for code in (EXIT_FAILED, EXIT_CORRUPT, EXIT_POLICY, EXIT_LEAKS):
        if code in codes:
            return code
    return EXIT_CLEAN
