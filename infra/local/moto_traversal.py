"""moto's update expression validation passes without abstract-class ``isinstance`` checks at every node.

Each ``UpdateItem`` runs about ten validation passes (``DepthFirstTraverser`` subclasses) over its
expression tree; at every node each pass asks ``isinstance(node, Node)`` and ``isinstance(node,
<the pass's node classes>)``. moto's node classes are abstract base classes (``Node`` has ``ABCMeta``), so
each of those checks goes through ``ABCMeta.__instancecheck__``: an eighth of the local stack's moto time.
The answers depend on the node's class and the pass's node classes alone, so they are kept per pair:

- ``traverse_node_recursively`` is moto's, step for step (children first, in order, with
  ``pre_processing_of_child`` before each; then ``process`` on a node of one of the pass's classes, the
  new node given the old one's parent and put in its place), with both checks answered by
  ``issubclass(type(node), ...)`` once per (node class, pass classes) pair.
- The pass's classes are its ``nodes_to_be_processed()``, asked at every node as moto does (the update
  expression patch keeps them once per pass), so a pass that changes them is followed.

moto never registers virtual subclasses with these abstract classes, and a class's subclass relations do
not change after it is defined, so the kept answers are the ones ``isinstance`` gives.
``install()`` / ``uninstall()`` / ``installed()``; ``tests/local/test_moto_traversal.py`` compares the
patched and unpatched passes' answers and errors, and ``make moto-parity`` runs moto's suites with it.
"""

from __future__ import annotations

import threading
from typing import Any

_originals: dict[str, Any] = {}
_lock = threading.Lock()
_is_node: dict[type, bool] = {}
_processed: dict[tuple[type, tuple[type, ...]], bool] = {}
KEPT_ANSWERS = 4096  # (node class, pass classes) pairs; moto has a few dozen node classes


def _is_instance(kept: dict[Any, bool], key: Any, cls: type, classes: type | tuple[type, ...]) -> bool:
    answer = kept.get(key)
    if answer is None:
        answer = issubclass(cls, classes)
        if len(kept) >= KEPT_ANSWERS:
            kept.clear()
        kept[key] = answer
    return answer


def _traverser(node_class: type) -> Any:
    def traverse_node_recursively(self: Any, node: Any, child_id: int = -1) -> Any:
        cls = type(node)
        if _is_instance(_is_node, cls, cls, node_class):
            parent_node = node.parent
            if node.children is not None:
                for i, child_node in enumerate(node.children):
                    self.pre_processing_of_child(node, i)
                    self.traverse_node_recursively(child_node, i)
            classes = self.nodes_to_be_processed()
            if _is_instance(_processed, (cls, classes), cls, classes):
                node = self.process(node)
                node.parent = parent_node
                if parent_node:
                    parent_node.children[child_id] = node
        return node

    traverse_node_recursively.__doc__ = "moto's depth-first pass, its type checks kept per node class."
    return traverse_node_recursively


def install() -> None:
    """Patch moto's depth-first traversal (idempotent)."""
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node  # type: ignore[attr-defined]

    with _lock:
        if _originals:
            return
        _originals["traverse"] = DepthFirstTraverser.__dict__["traverse_node_recursively"]
        DepthFirstTraverser.traverse_node_recursively = _traverser(Node)


def uninstall() -> None:
    """Restore moto's own traversal (idempotent)."""
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser  # type: ignore[attr-defined]

    with _lock:
        if _originals:
            DepthFirstTraverser.traverse_node_recursively = _originals.pop("traverse")
        _is_node.clear()
        _processed.clear()


def installed() -> bool:
    return bool(_originals)
