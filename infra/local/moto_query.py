"""A partition-indexed ``Query`` for moto's DynamoDB tables, with exactly moto's answers.

moto's ``Table.query`` starts from ``Table.all_items()``: every item of the table, sorted by its keys
(``DynamoType`` comparisons that build a ``Decimal`` per number and call). Then it keeps the items of the
queried partition. So one query costs O(n log n) in the table's size: 3 ms on an empty table, ~90 ms at
8,600 items, and a local stack gets slower with every run it keeps.

This patch leaves moto's query algorithm untouched (key conditions, sorting, ``ScanIndexForward``,
``ExclusiveStartKey``, ``Limit``, the 1 MB page, filters, projections, errors) and only narrows what
``all_items()`` returns *during one query* to the items that can match, in the order ``all_items()`` would
give them:

- table queries: the partition itself, found by a dict lookup in ``Table.items`` (moto keys that dict by
  the item's hash key, and ``DynamoType.__hash__`` agrees with the ``==`` moto filters with);
- index queries (local and global secondary indexes): the items whose index hash key attributes equal the
  condition's values, found by one pass over the table without building or sorting ``DynamoType``
  tuples (moto's own check is applied again to them, so the pass only has to keep every match).

Nothing is cached, so nothing can go stale: puts, updates (which change items in place), deletes,
transactions, batch writes, TTL expiry, restores and table deletion all act on ``Table.items``, which the
lookup reads at query time. Any query the narrowing does not recognise (no hash key, an unhashable value)
runs unchanged over every item. The narrowing is per call (a context variable), so concurrent queries on
other threads see the table as it is.

``install()`` / ``uninstall()`` patch and restore ``moto.dynamodb.models.table.Table``; ``installed()``
says whether it is in place. ``make moto-parity`` runs moto's own DynamoDB test suite with it installed.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Iterable
from typing import Any

_narrowed: contextvars.ContextVar[tuple[Any, list[Any]] | None] = contextvars.ContextVar(
    "moto_query_narrowed", default=None
)
_originals: dict[str, Callable[..., Any]] = {}
_lock = threading.Lock()


def _table_order(item: Any) -> Any:
    """The sort key of moto's ``Table.all_items()`` (kept identical: it decides the order of ties)."""
    return (item.hash_key, item.range_key) if item.range_key else item.hash_key


def _partition_items(table: Any, hash_key: Any) -> list[Any] | None:
    """The items whose table hash key equals ``hash_key`` (``None``: cannot tell, scan everything)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    if type(hash_key) is not DynamoType:
        return None
    try:
        partition = table.items.get(hash_key)  # .get: Table.items is a defaultdict
    except TypeError:  # an unhashable value: moto's own scan decides what happens
        return None
    if partition is None:
        return []
    return list(partition.values()) if table.range_key_attr else [partition]


def _every_item(table: Any) -> Iterable[Any]:
    for partition in table.items.values():
        if table.range_key_attr:
            yield from partition.values()
        else:
            yield partition


def _index_items(table: Any, conditions: list[tuple[str, Any]] | None) -> list[Any] | None:
    """The items whose attributes equal every index hash key condition, by moto's own test."""
    if not conditions:
        return None
    matches = []
    for item in _every_item(table):
        for name, expected in conditions:
            value = item.attrs.get(name)
            if not value or value != expected:
                break
        else:
            matches.append(item)
    return matches


def _candidates(table: Any, arguments: dict[str, Any]) -> list[Any] | None:
    if arguments.get("index_name"):
        return _index_items(table, arguments.get("hash_key_conditions"))
    return _partition_items(table, arguments.get("hash_key"))


def _all_items(original: Callable[[Any], list[Any]]) -> Callable[[Any], list[Any]]:
    @functools.wraps(original)
    def all_items(self: Any) -> list[Any]:
        narrowed = _narrowed.get()
        if narrowed is not None and narrowed[0] is self:
            return sorted(narrowed[1], key=_table_order)
        return original(self)

    return all_items


def _query(original: Callable[..., Any]) -> Callable[..., Any]:
    import inspect

    signature = inspect.signature(original)

    @functools.wraps(original)
    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            arguments = signature.bind(self, *args, **kwargs).arguments
        except TypeError:
            return original(self, *args, **kwargs)  # moto raises its own error
        candidates = _candidates(self, arguments)
        if candidates is None:
            return original(self, *args, **kwargs)
        token = _narrowed.set((self, candidates))
        try:
            return original(self, *args, **kwargs)
        finally:
            _narrowed.reset(token)

    return query


def install() -> None:
    """Patch moto's ``Table`` (idempotent)."""
    from moto.dynamodb.models.table import Table

    with _lock:
        if _originals:
            return
        _originals.update(query=Table.query, all_items=Table.all_items)
        Table.all_items = _all_items(Table.all_items)  # type: ignore[method-assign,assignment]
        Table.query = _query(Table.query)  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore moto's own ``Table`` methods (idempotent)."""
    from moto.dynamodb.models.table import Table

    with _lock:
        if not _originals:
            return
        Table.query = _originals.pop("query")  # type: ignore[method-assign]
        Table.all_items = _originals.pop("all_items")  # type: ignore[method-assign]


def installed() -> bool:
    return bool(_originals)
