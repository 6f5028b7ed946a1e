"""Findings both format checkers make the same way."""

from __future__ import annotations

from ..disk import VirtualDisk
from ..errors import CorruptImageError, ImageNotFoundError, ParentMismatchError, ParentNotFoundError, VhdkitError
from .report import ERROR, INCOMPLETE, Report
from .space import SpaceMap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


def error_from(report: Report, error: VhdkitError, structure: str) -> None:
    """An error the parsers raised, with the structure and offset they named."""
    if isinstance(error, CorruptImageError):
        report.add(ERROR, error.structure or structure, error.offset, str(error))
    else:
        report.add(ERROR, structure, None, str(error))


def report_overlaps(space: SpaceMap, report: Report) -> None:
    for first, second in space.overlaps():
        report.add(ERROR, second.owner, second.owner_offset,
                   f"its space ({second.start:#x}..{second.end:#x}) overlaps {first.owner} "
                   f"({first.start:#x}..{first.end:#x})")


def check_parent(open_parent: Callable[[], VirtualDisk], report: Report) -> None:
    """Open the chain through the parent resolver; each way it can fail is an error finding."""
    try:
        parent = open_parent()
    except (ParentNotFoundError, ImageNotFoundError) as e:  # not damage: the chain cannot be checked
        report.add(INCOMPLETE, "parent locator", None, str(e))
    except ParentMismatchError as e:
        report.add(ERROR, "parent locator", None, f"the parent found is not this disk's parent: {e}")
    except VhdkitError as e:
        report.add(ERROR, "parent", None, f"the parent cannot be used: {e}")
    else:
        parent.close()
