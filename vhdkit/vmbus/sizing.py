"""netvsc receive-buffer sizing: how many packet buffers a buffer holds, the packet rate that many
sustain when the guest drains them once per scheduling quantum, and a simulation of the loss.

The published account (Windows Server Performance Team, 2010; specs/vmbus.md): the
default 1 MB receive buffer holds 655 buffers of 1,600 bytes; with a quantum near 10 ms that
sustains 65,500 packets/s, while the native stack handles ~260,000. Sizes are binary (1 MB =
1,048,576 bytes, as the registry's KB units are 1,024 bytes).

The simulation is discrete-event in integer nanoseconds: arrival i of a constant stream comes at
floor(i * 10^9 / rate) ns, so exactly ``buffers`` arrivals fall in each quantum at the boundary
rate (float times put a 656th arrival in some quanta and showed loss that is not there).
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

NS = 1_000_000_000
PACKET_BUFFER = 1_600  # bytes per receive buffer slot in the published account
DEFAULT_QUANTUM_NS = 10_000_000  # 10 ms


class Plan(NamedTuple):
    buffer_bytes: int
    buffers: int
    max_packets_per_second: int  # drained once per quantum

    @property
    def kilobytes(self) -> int:
        return self.buffer_bytes // 1024


def buffers_in(buffer_bytes: int, packet_buffer: int = PACKET_BUFFER) -> int:
    return buffer_bytes // packet_buffer


def max_rate(buffers: int, quantum_ns: int = DEFAULT_QUANTUM_NS) -> int:
    """Packets/s that ``buffers`` sustain when drained once per quantum (rounded down)."""
    return buffers * NS // quantum_ns


def plan_for_size(buffer_bytes: int, quantum_ns: int = DEFAULT_QUANTUM_NS, packet_buffer: int = PACKET_BUFFER) -> Plan:
    n = buffers_in(buffer_bytes, packet_buffer)
    return Plan(buffer_bytes, n, max_rate(n, quantum_ns))


def plan_for_rate(rate: int, quantum_ns: int = DEFAULT_QUANTUM_NS, packet_buffer: int = PACKET_BUFFER) -> Plan:
    """The smallest buffer, in whole KB (the registry's unit), that sustains ``rate`` packets/s."""
    needed = -(-rate * quantum_ns // NS)  # buffers filled in one quantum
    kilobytes = -(-needed * packet_buffer // 1024)
    return plan_for_size(kilobytes * 1024, quantum_ns, packet_buffer)


class Loss(NamedTuple):
    arrivals: int
    lost: int

    @property
    def fraction(self) -> float:
        return self.lost / self.arrivals if self.arrivals else 0.0


def simulate(rate: float, buffers: int, *, quantum_ns: int = DEFAULT_QUANTUM_NS, duration_ns: int = NS,
             arrivals: str = "constant", seed: int = 0) -> Loss:
    """Arrivals (``constant`` or ``poisson`` at ``rate`` per second) into ``buffers`` slots that
    the guest empties at every quantum boundary; an arrival finding every slot taken is lost."""
    if buffers < 0 or rate < 0 or quantum_ns <= 0:
        raise ValueError("rate, buffers and quantum must be positive")
    if arrivals == "constant":
        times = _constant(rate, duration_ns)
    elif arrivals == "poisson":
        times = _poisson(rate, duration_ns, random.Random(seed))
    else:
        raise ValueError(f"arrivals must be 'constant' or 'poisson', not {arrivals!r}")
    lost = total = used = 0
    quantum = -1
    for t in times:  # the drain events are implicit: a new quantum index empties the slots
        q = t // quantum_ns
        if q != quantum:
            quantum, used = q, 0
        total += 1
        if used < buffers:
            used += 1
        else:
            lost += 1
    return Loss(total, lost)


def _constant(rate: float, duration_ns: int):  # noqa: ANN202 - a generator of ints
    if rate <= 0:
        return
    numerator, denominator = _as_fraction(rate)
    i = 0
    while True:
        t = i * NS * denominator // numerator
        if t >= duration_ns:
            return
        yield t
        i += 1


def _as_fraction(rate: float) -> tuple[int, int]:
    from fractions import Fraction

    f = Fraction(rate).limit_denominator(1_000_000)
    return f.numerator, f.denominator


def _poisson(rate: float, duration_ns: int, rng: random.Random):  # noqa: ANN202
    if rate <= 0:
        return
    t = 0.0
    mean_gap = NS / rate
    while True:
        t += rng.expovariate(1.0) * mean_gap
        if t >= duration_ns:
            return
        yield int(t)


def poisson_loss(rate: float, buffers: int, quantum_ns: int = DEFAULT_QUANTUM_NS) -> float:
    """The closed form: E[(N - B)+] / E[N] for N ~ Poisson(rate * quantum), B = buffers."""
    mean = rate * quantum_ns / NS
    if mean == 0:
        return 0.0
    # E[(N-B)+] = E[N] - B + sum_{k<B} (B-k) P(N=k); the pmf summed in logs (mean can be thousands)
    below = 0.0
    for k in range(buffers):
        below += (buffers - k) * math.exp(k * math.log(mean) - mean - math.lgamma(k + 1))
    excess = mean - buffers + below
    return max(excess, 0.0) / mean
