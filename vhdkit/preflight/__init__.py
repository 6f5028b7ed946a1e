"""Will this live migration work? Host facts (collected live on Linux, exported by a PowerShell
script on Hyper-V) checked against each other by the checklist that explains failed migrations."""

from .facts import HostFacts
from .files import load
from .rules import FAIL, PASS, RULES, TRANSFER_TYPES, WARN, Result, run

__all__ = ["FAIL", "PASS", "RULES", "TRANSFER_TYPES", "WARN", "HostFacts", "Result", "load", "run"]
