"""moto's condition expressions without lexing the same text again on every request.

Every ``ConditionExpression`` (each conditional ``PutItem``, ``UpdateItem``, ``DeleteItem``, transaction
item) and every ``FilterExpression`` is parsed by a new ``ConditionExpressionParser``, whose first step,
``_lex_condition_expression``, tries up to six regular expressions at every token of the text: a tenth of
the local stack's moto time, for the handful of condition texts an app sends over and over. The tokens
depend on the text alone (not on names, values or the item), so they are kept per text:

- The patched lexer returns what moto's returns, built fresh on every call: a new ``deque`` of new
  ``Node`` tuples, each with its own empty ``children`` list, in the same order, so nothing a later step
  does to them can reach another request.
- A text that fails to lex is not kept: moto's lexer runs again and raises the same ``ValueError``.
- Everything after the lexer (names and values substituted, functions, comparisons, validation, errors)
  is moto's, per request.

``install()`` / ``uninstall()`` / ``installed()``; ``tests/local/test_moto_conditions.py`` compares the
two lexers on a randomized corpus, and ``make moto-parity`` runs moto's own suites with it installed.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

LEXED_TEXTS = 1024  # distinct condition texts kept; an app has a handful
_originals: dict[str, Any] = {}
_lock = threading.Lock()


def _lexer(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """moto's lexer, remembering each text's tokens as (nonterminal, kind, text, value) tuples."""

    @functools.lru_cache(maxsize=LEXED_TEXTS)
    def tokens(parser_class: Any, expression: str) -> tuple[tuple[Any, Any, Any, Any], ...] | None:
        parser = parser_class(expression, None, None)  # lexing reads the text alone
        nodes = list(original(parser))
        if any(n.children for n in nodes):  # not the flat tokens moto lexes today: moto's lexer decides
            return None
        return tuple((n.nonterminal, n.kind, n.text, n.value) for n in nodes)

    @functools.wraps(original)
    def lex(self: Any) -> Any:
        expression = self.condition_expression
        if not isinstance(expression, str):
            return original(self)
        parser_class: Any = type(self)
        kept = tokens(parser_class, expression)
        if kept is None:
            return original(self)
        node = self.Node
        return deque(
            node(nonterminal=nonterminal, kind=kind, text=text, value=value, children=[])
            for nonterminal, kind, text, value in kept
        )

    return lex


def install() -> None:
    """Patch moto's condition expression lexer (idempotent)."""
    from moto.dynamodb.comparisons import ConditionExpressionParser

    with _lock:
        if _originals:
            return
        original = ConditionExpressionParser.__dict__["_lex_condition_expression"]
        _originals["lex"] = original
        setattr(ConditionExpressionParser, "_lex_condition_expression", _lexer(original))  # noqa: B010


def uninstall() -> None:
    """Restore moto's own lexer (idempotent)."""
    from moto.dynamodb.comparisons import ConditionExpressionParser

    with _lock:
        if _originals:
            setattr(ConditionExpressionParser, "_lex_condition_expression", _originals.pop("lex"))  # noqa: B010


def installed() -> bool:
    return bool(_originals)
