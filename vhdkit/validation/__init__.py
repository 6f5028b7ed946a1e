"""Structural validation behind ``vhdkit.check``: each format's checker and repairer, the
report they fill in, the space map that finds overlaps and leaks, and the policy rules."""
