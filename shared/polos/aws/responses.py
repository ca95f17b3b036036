"""Lambda's 6 MB response limit, kept by every HTTP answer: a byte budget and how an answer is measured.

Lambda counts the *invocation response*: the API Gateway envelope whose ``body`` is the JSON answer as a
string, so the answer is JSON-encoded twice (Powertools writes the body with ``ensure_ascii``, the Python
runtime encodes the envelope again, escaping every ``"`` and ``\\``). A value's share of it is measured
that way, which bounds the body itself too.
"""

from __future__ import annotations

import json
from typing import Any

# Listings and reads stop adding items at this many bytes; the envelope and the fields around the items
# stay far below the 1 MB left under Lambda's 6 MB (6,291,456 bytes).
RESPONSE_BUDGET_BYTES = 5 * 1024 * 1024


def wire_size(value: Any) -> int:
    """Bytes ``value`` adds to a Lambda invocation response (JSON body inside the JSON envelope)."""
    return len(json.dumps(json.dumps(value, separators=(",", ":")))) - 2  # minus the string's quotes
