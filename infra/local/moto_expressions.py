"""moto's UpdateItem without re-parsing and re-counting the same update expression on every request.

Per ``UpdateItem``, moto parses the ``UpdateExpression`` twice (request validation, then the backend) and
its ``ActionCountValidator`` runs ``find_clauses`` over the subtree of every nested ``UpdateExpression``
node: quadratic in the expression's size, a quarter of the local stack's CPU time for the run journal's
one-line updates. Both depend on the expression text alone (not on names, values or the item):

- ``UpdateExpressionParser.make`` keeps the trees it parsed, by text. Every consumer in moto either only
  reads the tree (``find_clauses``) or works on a deep copy (``Validator.__init__``), so one shared tree
  is never changed. An expression that fails to parse is not kept and fails again the same way.
- Each kept tree carries its text; once ``ActionCountValidator`` has passed a copy of it, later copies
  skip the count (it would pass again). ``OverlappingPathsValidator`` walks the same nested nodes the
  same quadratic way, and its answer depends on the text and the ``ExpressionAttributeNames`` alone:
  once it has passed a copy with given names, later copies with the same names skip it. Trees moto
  builds any other way are checked as before, and an expression refused (too many clauses, overlapping
  paths, an undefined name) is checked, and refused, every time.
- ``DepthFirstTraverser.nodes_to_be_processed`` (each of the ten validation passes asks it at every
  node of the tree) builds its processing map, bound methods and all, to return the map's keys: once
  per pass now, kept on the pass (every ``_processing_map`` in moto is a literal keyed by node classes).
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
from collections.abc import Callable, Hashable
from typing import Any

PARSED_TREES = 1024  # distinct update expressions kept; an app has a handful
_SOURCE = "_local_stack_expression"  # the attribute a kept tree carries its text in (copied by deepcopy)
_DEEPCOPY = "deepcopy"  # the name validators.py imports copy.deepcopy as (patched there only)
PASSED_KEYS = 4096  # (expression, names) pairs remembered as passed; cleared when full
_NODES = "_local_stack_nodes"  # where a validation pass keeps its node classes
_passed: set[Hashable] = set()
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


def _skipped_once_passed(
    original: Callable[[Any, Any], Any], key: Callable[[Any, str], Hashable]
) -> Callable[[Any, Any], Any]:
    """A validation pass over a kept tree that is skipped once it has passed for the same ``key``."""

    @functools.wraps(original)
    def traverse(self: Any, node: Any) -> Any:
        source = getattr(node, _SOURCE, None)
        if not isinstance(source, str):
            return original(self, node)
        try:
            passed = key(self, source)
            hash(passed)
        except TypeError:  # unhashable names: moto's own pass decides
            return original(self, node)
        if passed in _passed:
            return node  # these passes return the tree unchanged when it passes
        checked = original(self, node)
        if len(_passed) >= PASSED_KEYS:
            _passed.clear()
        _passed.add(passed)
        return checked

    return traverse


def _count_key(validator: Any, source: str) -> Hashable:
    return ("count", source)


def _paths_key(validator: Any, source: str) -> Hashable:
    names = validator.expression_attribute_names
    return ("paths", source, None if names is None else tuple(sorted(names.items())))


def _nodes_to_be_processed(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(original)
    def nodes_to_be_processed(self: Any) -> Any:
        kept = self.__dict__.get(_NODES)
        if kept is None:
            kept = self.__dict__[_NODES] = original(self)
        return kept

    return nodes_to_be_processed


def install() -> None:
    """Patch moto's update expression parser and action count (idempotent)."""
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.validators import ActionCountValidator, OverlappingPathsValidator

    with _lock:
        if _originals:
            return
        _originals.update(
            make=UpdateExpressionParser.__dict__["make"],
            count=ActionCountValidator.__dict__.get("traverse"),
            paths=OverlappingPathsValidator.__dict__.get("traverse"),
            nodes=DepthFirstTraverser.__dict__["nodes_to_be_processed"],
            deepcopy=getattr(validators, _DEEPCOPY),
        )
        kept = _make(UpdateExpressionParser.make)
        UpdateExpressionParser.make = staticmethod(lambda expression: kept(expression)[0])
        ActionCountValidator.traverse = _skipped_once_passed(ActionCountValidator.traverse, _count_key)
        OverlappingPathsValidator.traverse = _skipped_once_passed(
            OverlappingPathsValidator.traverse, _paths_key
        )
        DepthFirstTraverser.nodes_to_be_processed = _nodes_to_be_processed(_originals["nodes"])
        setattr(validators, _DEEPCOPY, _copy(_originals["deepcopy"], kept))


def uninstall() -> None:
    """Restore moto's own parser and count (idempotent)."""
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.validators import ActionCountValidator, OverlappingPathsValidator

    with _lock:
        if not _originals:
            return
        UpdateExpressionParser.make = _originals.pop("make")
        setattr(validators, _DEEPCOPY, _originals.pop("deepcopy"))
        DepthFirstTraverser.nodes_to_be_processed = _originals.pop("nodes")
        for cls, name in ((ActionCountValidator, "count"), (OverlappingPathsValidator, "paths")):
            traverse = _originals.pop(name)
            if traverse is None:
                del cls.traverse  # inherited from DepthFirstTraverser again
            else:
                cls.traverse = traverse
        _passed.clear()


def installed() -> bool:
    return bool(_originals)
