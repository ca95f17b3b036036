"""DynamoDB item sizes and capacity units, by the published rules."""

from __future__ import annotations

import pytest
from polos.aws.item_size import item_size, number_size, value_size

from infra.metering.units import read_units, write_units


def test_item_size_of_the_published_example() -> None:
    # The item sized in DynamoDB's documentation tools: 141 bytes (names + values, a 4-digit number = 3).
    item = {
        "itemType": {"S": "SLOT"},
        "id": {"S": "abc1231"},
        "hostName": {"S": "Harry Mason"},
        "timeSlot": {"S": "February 23, 1999"},
        "slotStatus": {"S": "OPEN"},
        "createdAt": {"S": "February 1, 1999"},
        "updatedAt": {"S": "February 1, 1999"},
        "expiresAt": {"N": "2099"},
    }
    assert item_size(item) == 141


@pytest.mark.parametrize(
    ("number", "size"),
    [("0", 1), ("7", 2), ("12", 2), ("123", 3), ("1000", 2), ("0.001", 2), ("-12.50", 3), ("1E+10", 2)],
)
def test_numbers_cost_a_byte_per_two_significant_digits_plus_one(number: str, size: int) -> None:
    assert number_size(number) == size


def test_strings_are_utf8_bytes_and_collections_carry_overhead() -> None:
    assert value_size({"S": "é"}) == 2
    assert value_size({"B": "AAEC"}) == 3  # base64 of 3 raw bytes
    assert value_size({"BOOL": True}) == value_size({"NULL": True}) == 1
    assert value_size({"L": []}) == value_size({"M": {}}) == 3
    assert value_size({"L": [{"S": "ab"}, {"N": "1"}]}) == 3 + (2 + 1) + (2 + 1)
    assert value_size({"M": {"k": {"S": "ab"}}}) == 3 + 1 + 2 + 1
    assert value_size({"SS": ["a", "bc"]}) == 3
    with pytest.raises(ValueError, match="unknown DynamoDB attribute type"):
        value_size({"X": 1})
    assert item_size(None) == item_size({}) == 0


def test_write_units_round_up_per_kilobyte_and_double_in_transactions() -> None:
    assert write_units(0) == 1
    assert write_units(1024) == 1
    assert write_units(1025) == 2
    assert write_units(1025, transactional=True) == 4


def test_read_units_round_up_per_4_kb_and_halve_when_eventually_consistent() -> None:
    assert read_units(0, consistent=True) == 1
    assert read_units(4096, consistent=True) == 1
    assert read_units(4097, consistent=True) == 2
    assert read_units(4097, consistent=False) == 1
    assert read_units(100, consistent=False) == 0.5
    assert read_units(100, consistent=True, transactional=True) == 2
