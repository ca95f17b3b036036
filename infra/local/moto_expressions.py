"""moto's UpdateItem without re-parsing and re-counting the same update expression on every request.

Per ``UpdateItem``, moto parses the ``UpdateExpression`` twice (request validation, then the backend) and
its ``ActionCountValidator`` runs ``find_clauses`` over the subtree of every nested ``UpdateExpression``
node: quadratic in the expression's size, a quarter of the local stack's CPU time for the run journal's
one-line updates. Both depend on the expression text alone (not on names, values or the item):

- ``UpdateExpressionParser.make`` keeps the trees it parsed, by text. Every consumer in moto either only
  reads the tree (``find_clauses``) or works on a deep copy (``Validator.__init__``), so one shared tree
  is never changed. An expression that fails to parse is not kept and fails again the same way.
- Each kept tree carries its text; once ``ActionCountValidator`` has passed a copy of it, later copies
  skip the count (it would pass again). Trees moto builds any other way are counted as before, and an
  expression with too many clauses is counted, and refused, every time.

- ``Validator.__init__`` deep-copies the tree it is given, to change the copy (2.3 ms with ``copy.deepcopy``
  for the journal's lease expression, the largest single cost of an ``UpdateItem``). For a kept tree the
  copy is made with ``pickle.loads`` from the tree pickled once when it was kept: the same objects,
  values and links (~35x faster). Anything else moto copies there, or a kept tree that cannot be
  pickled, is deep-copied as before.

Everything else (validation against the item and values, execution, errors and their order) is moto's.
``install()`` / ``uninstall()``; ``make moto-parity`` runs moto's DynamoDB suite with it installed.
"""

from __future__ import annotations

import functools
import pickle  # nosec B403: only loads bytes this module pickled itself, in this process
import threading
from collections.abc import Callable
from typing import Any

PARSED_TREES = 1024  # distinct update expressions kept; an app has a handful
_SOURCE = "_local_stack_expression"  # the attribute a kept tree carries its text in (copied by deepcopy)
_DEEPCOPY = "deepcopy"  # the name validators.py imports copy.deepcopy as (patched there only)
_counted: set[str] = set()
_originals: dict[str, Any] = {}
_lock = threading.Lock()


def _make(original: Callable[[str], Any]) -> Callable[[str], tuple[Any, bytes | None]]:
    """The kept tree of an expression, with its pickle (``None`` when it cannot be pickled)."""

    @functools.lru_cache(maxsize=PARSED_TREES)
    def kept(expression: str) -> tuple[Any, bytes | None]:
        tree = original(expression)
        setattr(tree, _SOURCE, expression)
        try:
            pickled: bytes | None = pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # any node pickle refuses: that tree is deep-copied as moto does
            pickled = None
        return tree, pickled

    return kept


def _copy(
    original: Callable[..., Any], kept: Callable[[str], tuple[Any, bytes | None]]
) -> Callable[..., Any]:
    """``copy.deepcopy`` for moto's validators: a kept tree itself is copied from its pickle."""

    def deepcopy(value: Any, memo: Any = None) -> Any:
        source = getattr(value, _SOURCE, None)
        if memo is None and isinstance(source, str):
            tree, pickled = kept(source)
            if tree is value and pickled is not None:  # the kept tree itself, never a changed copy of it
                return pickle.loads(pickled)  # nosec B301: pickled by _make from moto's own parse
        return original(value, memo)

    return deepcopy


def _traverse(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    @functools.wraps(original)
    def traverse(self: Any, node: Any) -> Any:
        source = getattr(node, _SOURCE, None)
        if source is not None and source in _counted:
            return node  # the count returns the tree unchanged when it passes
        checked = original(self, node)
        if isinstance(source, str):
            _counted.add(source)
        return checked

    return traverse


def install() -> None:
    """Patch moto's update expression parser and action count (idempotent)."""
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.validators import ActionCountValidator

    with _lock:
        if _originals:
            return
        _originals.update(
            make=UpdateExpressionParser.__dict__["make"],
            traverse=ActionCountValidator.__dict__.get("traverse"),
            deepcopy=getattr(validators, _DEEPCOPY),
        )
        kept = _make(UpdateExpressionParser.make)
        UpdateExpressionParser.make = staticmethod(lambda expression: kept(expression)[0])
        ActionCountValidator.traverse = _traverse(ActionCountValidator.traverse)
        setattr(validators, _DEEPCOPY, _copy(_originals["deepcopy"], kept))


def uninstall() -> None:
    """Restore moto's own parser and count (idempotent)."""
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.validators import ActionCountValidator

    with _lock:
        if not _originals:
            return
        UpdateExpressionParser.make = _originals.pop("make")
        setattr(validators, _DEEPCOPY, _originals.pop("deepcopy"))
        traverse = _originals.pop("traverse")
        if traverse is None:
            del ActionCountValidator.traverse  # inherited from DepthFirstTraverser again
        else:
            ActionCountValidator.traverse = traverse
        _counted.clear()


def installed() -> bool:
    return bool(_originals)
