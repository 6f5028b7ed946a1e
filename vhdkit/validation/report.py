"""What a check found: findings with a severity, and the verdict and exit code they add up to.

Exit codes follow ``qemu-img check``: 0 clean, 2 corruption, 3 leaks only (allocated space that
nothing references), 1 the check could not run. Warnings (damage the image survives, such as one
bad copy of a structure kept twice) leave the verdict clean, as qemu-img leaves them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

ERROR = "error"  # the image is corrupt, or breaks a required policy
LEAK = "leak"  # space in the file that nothing references; data is intact
WARNING = "warning"  # damage the image survives, or something readers disagree on

EXIT_CLEAN, EXIT_FAILED, EXIT_CORRUPT, EXIT_LEAKS = 0, 1, 2, 3


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

    def __init__(self, path: str) -> None:
        self.path = path
        self.format: str | None = None
        self.findings: list[Finding] = []
        self.repairs: list[str] = []  # one sentence per change made, in order
        self.failure: str | None = None  # why the check could not run at all
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
            return "not checked"
        if self.count(ERROR):
            return "corrupt"
        if self.count(LEAK):
            return "leaks"
        return "clean"

    @property
    def exit_code(self) -> int:
        return {"not checked": EXIT_FAILED, "corrupt": EXIT_CORRUPT, "leaks": EXIT_LEAKS}.get(self.verdict, EXIT_CLEAN)

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
            "leaked_bytes": self.leaked_bytes,
            "seconds": round(self.seconds, 6),
            "findings": [f.as_dict() for f in self.findings],
            "repairs": list(self.repairs),
        }


def worst_exit_code(reports: list[Report]) -> int:
    """One exit code for several images: could-not-check, then corrupt, then leaks, then clean."""
    codes = {r.exit_code for r in reports}
    for code in (EXIT_FAILED, EXIT_CORRUPT, EXIT_LEAKS):
        if code in codes:
            return code
    return EXIT_CLEAN
