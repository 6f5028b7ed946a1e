"""The operations behind the public API: open, create, check, convert, resize, compact, merge.

Each module is named for what it does and none for the function the package root exports, so
``vhdkit.check`` (a function) and ``vhdkit.ops.check`` (this module) never shadow each other.
"""
