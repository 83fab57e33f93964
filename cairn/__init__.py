"""Cairn: a persistent, multi-node EVM test network node."""

__version__ = "0.1.0"
