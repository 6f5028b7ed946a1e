"""The states of a mirror job, its modes and its error policies.

    created ──► copying ──► ready ──► switching ──► completed
                   │  ▲        │          │
                   ▼  │        │          │
                 paused        │          │
                   │           │          │
                   └───────────┴──────────┴──► failed / cancelled   (the guest stays on the source)
"""

from __future__ import annotations

import enum


class MirrorState(str, enum.Enum):
    """Where a mirror job is. A ``str`` enum: it compares equal to its name as text ("ready"),
    which is what the control socket and ``--json`` events carry."""

    CREATED = "created"  # made, not started
    COPYING = "copying"  # the bulk pass runs; guest writes are mirrored or marked dirty
    PAUSED = "paused"  # pause_copy(), or an error under the "stop" policy: waiting for resume()
    READY = "ready"  # the pass is done and nothing is dirty: a switch-over will be short
    SWITCHING = "switching"  # the guest's gate is closed, the last copies and the flush run
    COMPLETED = "completed"  # the guest runs on the target
    FAILED = "failed"  # the guest stays on the source, which is complete
    CANCELLED = "cancelled"  # likewise, by request

    @property
    def ended(self) -> bool:
        return self in ENDED

    def __str__(self) -> str:
        return self.value


ENDED = frozenset({MirrorState.COMPLETED, MirrorState.FAILED, MirrorState.CANCELLED})


class MirrorMode(str, enum.Enum):
    """How guest writes are handled while the pass runs."""

    WRITE_BLOCKING = "write-blocking"  # written to the target too, synchronously: the dirt only shrinks
    BACKGROUND = "background"  # only marked dirty: the guest never waits for the target

    def __str__(self) -> str:
        return self.value


class ErrorPolicy(str, enum.Enum):
    """What a job does when reading the source or writing the target fails."""

    REPORT = "report"  # fail the job (the guest stays on the source)
    RETRY = "retry"  # mark the range dirty again, back off, fail after max_retries in a row
    STOP = "stop"  # pause until resume()

    def __str__(self) -> str:
        return self.value


MODES = tuple(m.value for m in MirrorMode)
POLICIES = tuple(p.value for p in ErrorPolicy)
STATES = tuple(s.value for s in MirrorState)
