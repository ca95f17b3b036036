"""DynamoDB item sizes by DynamoDB's published rules, for the runtime's choices and the meter's bill.

https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html: attribute
name bytes + value bytes; strings and binaries their (UTF-8 / raw) length; numbers 1 byte per two
significant digits + 1; null and booleans 1; lists and maps 3 bytes + their elements, each element 1 byte
more (map elements also count their names); sets the sum of their members. Items are in boto3's low-level
form (``{"S": ...}``, ``{"M": {...}}``); a binary may be bytes or, in the wire form, base64 text.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

WRITE_UNIT_BYTES = 1024  # a write costs one unit per started KB of the item (the larger of before and after)


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: 1 per two significant digits, plus 1."""
    mantissa = text.strip().lstrip("+-").lower().split("e")[0]
    digits = mantissa.replace(".", "").strip("0")  # leading and trailing zeroes are trimmed
    return math.ceil(len(digits) / 2) + 1


def _binary_size(value: Any) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    return len(base64.b64decode(value))  # the wire (JSON) form is base64 text


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value (``{"S": ...}``, ``{"M": {...}}``, ...)."""
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


def attribute_size(name: str, value: Mapping[str, Any]) -> int:
    """Bytes one attribute adds to an item: its name and its value."""
    return _utf8(name) + value_size(value)


def item_size(item: Mapping[str, Any] | None) -> int:
    """Bytes of an item: every attribute's name plus its value (0 for no item)."""
    if not item:
        return 0
    return sum(attribute_size(name, value) for name, value in item.items())
