"""A small line chart written as a PNG with the standard library (zlib): loss against packet
rate, one line per buffer size. No plotting library is needed for one chart: axes, ticks with
numbers, the lines and a legend, drawn in a 3x5 pixel font scaled up."""

from __future__ import annotations

import struct
import zlib
from typing import Sequence

# 3x5 glyphs, rows top to bottom, bits left to right
_FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "%": "101001010100101",
    "k": "100101110101101", "M": "101111111101101", "B": "110101110101110", "p": "000110101110100",
    "s": "000011010001110", " ": "000000000000000", "l": "010010010010010", "o": "000010101101010",
    "/": "001001010100100", "K": "101101110101101", "r": "000101110100100", "a": "000011101101011",
    "t": "010111010010011", "e": "000111111100011", "L": "100100100100111", "x": "000101010101000",
}
COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(b"\xff" * (width * height * 3))

    def dot(self, x: int, y: int, color: tuple[int, int, int]) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            at = (y * self.width + x) * 3
            self.pixels[at : at + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int], thick: int = 1) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            x, y = x0 + (x1 - x0) * i // steps, y0 + (y1 - y0) * i // steps
            for dx in range(thick):
                for dy in range(thick):
                    self.dot(x + dx, y + dy, color)

    def text(self, x: int, y: int, s: str, color: tuple[int, int, int] = (0, 0, 0), scale: int = 2) -> None:
        for ch in s:
            glyph = _FONT.get(ch, _FONT[" "])
            for i, bit in enumerate(glyph):
                if bit == "1":
                    for dx in range(scale):
                        for dy in range(scale):
                            self.dot(x + (i % 3) * scale + dx, y + (i // 3) * scale + dy, color)
            x += 4 * scale

    def png(self) -> bytes:
        raw = b"".join(b"\0" + bytes(self.pixels[y * self.width * 3 : (y + 1) * self.width * 3])
                       for y in range(self.height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def loss_chart(rates: Sequence[int], series: dict[str, Sequence[float]], width: int = 640, height: int = 400) -> bytes:
    """Loss (fraction, 0..max) against rate (packets/s), a line per named series."""
    canvas = Canvas(width, height)
    left, right, top, bottom = 60, width - 20, 20, height - 50
    top_loss = max([max(v) for v in series.values()] + [0.01])
    top_loss = _nice(top_loss)
    lo, hi = min(rates), max(rates)
    black, grey = (0, 0, 0), (200, 200, 200)

    def px(rate: float, loss: float) -> tuple[int, int]:
        x = left + int((rate - lo) / ((hi - lo) or 1) * (right - left))
        y = bottom - int(loss / top_loss * (bottom - top))
        return x, y

    for i in range(5):  # grid and tick labels
        loss = top_loss * i / 4
        _, y = px(lo, loss)
        canvas.line(left, y, right, y, grey)
        canvas.text(4, y - 5, f"{loss * 100:.0f}%" if top_loss >= 0.04 else f"{loss * 100:.1f}%")
        rate = lo + (hi - lo) * i / 4
        x, _ = px(rate, 0)
        canvas.line(x, bottom, x, bottom + 4, black)
        canvas.text(x - 16, bottom + 10, f"{rate / 1000:.0f}k")
    canvas.line(left, top, left, bottom, black)
    canvas.line(left, bottom, right, bottom, black)
    canvas.text(right - 150, bottom + 30, "rate pps")
    for n, (name, losses) in enumerate(series.items()):
        color = COLORS[n % len(COLORS)]
        points = [px(r, v) for r, v in zip(rates, losses)]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            canvas.line(x0, y0, x1, y1, color, thick=2)
        canvas.line(left + 20, top + 10 + 16 * n, left + 40, top + 10 + 16 * n, color, thick=3)
        canvas.text(left + 48, top + 5 + 16 * n, name, color)
    return canvas.png()


def _nice(value: float) -> float:
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
        if value <= step:
            return step
    return 1.0
