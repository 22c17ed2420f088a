"""The version of nvppl."""

__version__ = "0.1.0"
