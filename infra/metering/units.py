"""DynamoDB item sizes and the read/write units they cost, by DynamoDB's published rules.

Sizes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
attribute name bytes + value bytes; strings and binaries their (UTF-8 / raw) length; numbers 1 byte per
two significant digits + 1; null and booleans 1; lists and maps 3 bytes + their elements, each element
1 byte more (map elements also count their names); sets the sum of their members.
Units: a write costs ceil(size / 1 KB) units (of the larger of the item before and after), a read
ceil(size / 4 KB) (half when eventually consistent); transactional reads and writes cost double.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: 1 per two significant digits, plus 1."""
    mantissa = text.strip().lstrip("+-").lower().split("e")[0]
    digits = mantissa.replace(".", "").strip("0")  # leading and trailing zeroes are trimmed
    return math.ceil(len(digits) / 2) + 1


def _binary_size(value: Any) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    return len(base64.b64decode(value))  # the wire (JSON) form is base64 text


def value_size(value: dict[str, Any]) -> int:
    """Bytes of one attribute value in the low-level wire form (``{"S": ...}``, ``{"M": {...}}``, ...)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return _utf8(inner)
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return _binary_size(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(_utf8(member) for member in inner)
    if kind == "NS":
        return sum(number_size(member) for member in inner)
    if kind == "BS":
        return sum(_binary_size(member) for member in inner)
    if kind == "L":
        return 3 + sum(value_size(element) + 1 for element in inner)
    if kind == "M":
        return 3 + sum(_utf8(name) + value_size(element) + 1 for name, element in inner.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_size(item: Mapping[str, Any] | None) -> int:
    """Bytes of an item: every attribute's name plus its value (0 for no item)."""
    if not item:
        return 0
    return sum(_utf8(name) + value_size(value) for name, value in item.items())


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
