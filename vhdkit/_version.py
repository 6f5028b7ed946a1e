"""The version, in a module of its own so that code inside the package never imports the root."""

__version__ = "0.1.0"
CREATOR = f"vhdkit {__version__}"  # what new VHDX files name as their creator ([MS-VHDX] 2.2.1)
