"""Who uses which bytes of an image file: overlaps (two structures claiming the same space) and
leaks (space in the file that nothing claims).

Ranges are collected first and sorted once, so a BAT of millions of entries costs one sort of the
allocated ones, not a comparison per pair.
"""

from __future__ import annotations
from ..runtime_types import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator


class Claim(NamedTuple):
    start: int
    end: int  # exclusive
    owner: str  # "BAT entry 7", "metadata region", ...
    owner_offset: int | None  # where the claiming record itself lies (a BAT entry's offset)


class SpaceMap:
    def __init__(self) -> None:
        self.claims: list[Claim] = []

    def claim(self, start: int, length: int, owner: str, owner_offset: int | None = None) -> None:
        if length > 0:
            self.claims.append(Claim(start, start + length, owner, owner_offset))

    def overlaps(self) -> Iterator[tuple[Claim, Claim]]:
        """Each claim that overlaps one before it (by start), with the one it overlaps."""
        reach: Claim | None = None  # the claim reaching furthest so far
        for claim in sorted(self.claims):
            if reach is not None and claim.start < reach.end:
                yield reach, claim
            if reach is None or claim.end > reach.end:
                reach = claim

    def gaps(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """(offset, length) of the runs in [start, end) that no claim covers."""
        pos = start
        for claim in sorted(self.claims):
            if claim.start > pos:
                stop = min(claim.start, end)
                if stop > pos:
                    yield pos, stop - pos
            pos = max(pos, claim.end)
            if pos >= end:
                return
        if pos < end:
            yield pos, end - pos
