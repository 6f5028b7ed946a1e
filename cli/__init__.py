"""The ``vhdkit`` command line (installed as the ``vhdkit_cli`` package): parsing and rendering only."""
