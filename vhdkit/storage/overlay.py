"""A copy-on-write view of a store whose writes stay in memory.

Used to replay a VHDX log for a read-only open ([MS-VHDX] 2.3.3 and its note <5>: a read-only
mount replays in memory): the replay writes into the overlay, every later read sees the replayed
bytes, and the file underneath is never touched.

Written ranges are kept as a sorted list of non-overlapping segments, each holding bytes or
standing for zeros, so a large zeroing costs no memory. Reads that miss every segment go straight
to the base store.
"""

from __future__ import annotations

import bisect

from .base import BaseStore, Store, _check_range

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator


class OverlayStore(BaseStore):
    def __init__(self, base: Store) -> None:
        self.base = base
        self.url = base.url
        self.writable = True  # writes land in memory only
        self._starts: list[int] = []
        self._segments: list[tuple[int, int, bytes | None]] = []  # (start, end, data or None=zeros)
        self._size = base.size()

    # -- writes -------------------------------------------------------------------------------
    def pwrite(self, offset: int, data: bytes | memoryview) -> int:
        _check_range(offset, len(data))
        self._put(offset, offset + len(data), bytes(data))
        return len(data)

    def write_zeros(self, offset: int, n: int) -> None:
        _check_range(offset, n)
        if n:
            self._put(offset, offset + n, None)

    def truncate(self, n: int) -> None:
        if n < self._size:
            # Cut bytes read as zeros if the overlay grows again, as in a real file: hide the
            # base's bytes there behind a zero segment.
            self._put(n, max(self._size, self.base.size()), None)
        self._size = n

    def punch(self, offset: int, n: int) -> None:
        self.write_zeros(offset, n)

    def _put(self, start: int, end: int, data: bytes | None) -> None:
        self._cut(start, end)
        i = bisect.bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._segments.insert(i, (start, end, data))
        self._size = max(self._size, end)

    def _cut(self, start: int, end: int) -> None:
        """Remove [start, end) from the segment list, trimming segments that straddle it."""
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        kept_before: list[tuple[int, int, bytes | None]] = []
        kept_after: list[tuple[int, int, bytes | None]] = []
        j = i
        while j < len(self._segments) and self._segments[j][0] < end:
            s, e, d = self._segments[j]
            if e <= start:
                kept_before.append((s, e, d))
            else:
                if s < start:
                    kept_before.append((s, start, None if d is None else d[: start - s]))
                if e > end:
                    kept_after.append((end, e, None if d is None else d[end - s :]))
            j += 1
        replacement = kept_before + kept_after
        self._segments[i:j] = replacement
        self._starts[i:j] = [s for s, _, _ in replacement]

    # -- reads --------------------------------------------------------------------------------
    def preadinto(self, offset: int, buf: memoryview) -> int:
        _check_range(offset, len(buf))
        n = max(0, min(len(buf), self._size - offset))
        end = offset + n
        if n == 0:
            return 0
        i = max(bisect.bisect_right(self._starts, offset) - 1, 0)
        pos = offset
        while pos < end:
            seg = self._segments[i] if i < len(self._segments) else None
            if seg is None or seg[0] >= end:
                self._read_base(pos, buf[pos - offset : n])
                break
            s, e, d = seg
            if e <= pos:
                i += 1
                continue
            if s > pos:
                self._read_base(pos, buf[pos - offset : s - offset])
                pos = s
            stop = min(e, end)
            piece = buf[pos - offset : stop - offset]
            if d is None:
                piece[:] = bytes(len(piece))
            else:
                piece[:] = d[pos - s : stop - s]
            pos = stop
            i += 1
        return n

    def _read_base(self, offset: int, view: memoryview) -> None:
        got = self.base.preadinto(offset, view)
        if got < len(view):  # past the base's end but inside the overlay's size: zeros
            view[got:] = bytes(len(view) - got)

    def size(self) -> int:
        return self._size

    def dirty_ranges(self) -> Iterator[tuple[int, int]]:
        for s, e, _ in self._segments:
            yield (s, e - s)

    def allocated_ranges(self) -> Iterator[tuple[int, int]]:
        return self.base.allocated_ranges()

    def allocated_bytes(self) -> int | None:
        return self.base.allocated_bytes()

    def close(self) -> None:
        self.base.close()
