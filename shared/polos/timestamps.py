"""The one timestamp format on the wire and in the store (no pydantic: the keys path imports it)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(moment: datetime) -> str:
    """``2025-01-28T10:30:00.123456Z`` — the one timestamp format on the wire and in the store."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
