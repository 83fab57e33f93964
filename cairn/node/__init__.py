"""Node assembly: configuration, CLI, keys, lifecycle, health, metrics and logging.

The only component that wires disk, network and clock together; nothing imports it.
"""
