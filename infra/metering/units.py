"""The read and write units DynamoDB items cost, by DynamoDB's published rules (item sizes:
:mod:`polos.aws.item_size`, which the runtime uses too).

Units: a write costs ceil(size / 1 KB) units (of the larger of the item before and after), a read
ceil(size / 4 KB) (half when eventually consistent); transactional reads and writes cost double.
"""

from __future__ import annotations

import math

from polos.aws.item_size import WRITE_UNIT_BYTES

__all__ = ["READ_UNIT_BYTES", "WRITE_UNIT_BYTES", "read_units", "write_units"]
READ_UNIT_BYTES = 4096


def write_units(size: int, *, transactional: bool = False) -> int:
    """Write units of one item write: ceil(size / 1 KB), at least 1; doubled in a transaction."""
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return 2 * units if transactional else units


def read_units(size: int, *, consistent: bool, transactional: bool = False) -> float:
    """Read units of ``size`` bytes read in one request: ceil(size / 4 KB), at least 1; half if eventual."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2
