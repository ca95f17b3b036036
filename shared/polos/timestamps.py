"""The one timestamp format on the wire and in the store (no pydantic: the keys path imports it)."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_utc_iso(text: str) -> datetime:
    """The moment an ISO 8601 text names, ``Z`` for UTC included (what :func:`utc_iso` writes, and AWS's
    ``2025-01-28T10:30:00Z``)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def utc_iso(moment: datetime) -> str:
    """``2025-01-28T10:30:00.123456Z`` — the one timestamp format on the wire and in the store."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
