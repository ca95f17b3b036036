"""moto's response serializer picking a dict's members without working out their aliases again every time.

moto 5 serializes every answer against botocore's output shape: for each member of each structure it
builds an ``AttributePickerContext`` and asks six alias providers for the member's possible keys (and
``XFormedAttributePicker`` their ``xform_name`` too), then reads the first that the value has. A DynamoDB
answer is mostly ``AttributeValue`` structures (ten members, one present), so a sixth of the local
stack's moto time goes to these alias lists, the same for every item.

For a value that is a plain ``dict``, the providers' answers depend on the member's key, its shape and
that shape's parent alone (``ExplicitAlias`` and ``ClassPrefixAlias`` read only the value's class, which is
``dict``; the others read the shape), so the possible keys are kept per (picker class, key, shape, parent)
and read in moto's order with moto's ``get_value``; the picker's ``response_transformers`` apply as in
moto. The kept entries hold their shapes, so an ``id`` is never reused while kept. Anything else (another
picker, other alias providers, an object or a ``dict`` subclass as the value) goes through moto's picker.

``install()`` / ``uninstall()`` / ``installed()``; ``tests/local/test_moto_serialize.py`` compares the
patched and unpatched responses on a randomized corpus of items, and ``make moto-parity`` runs moto's
suites with it installed.
"""

from __future__ import annotations

import threading
from typing import Any

KEPT_MEMBERS = 8192  # (picker, key, shape, parent) entries; cleared when full
_originals: dict[str, Any] = {}
_lock = threading.Lock()
_aliases: dict[tuple[Any, ...], tuple[tuple[str, ...], Any, Any]] = {}


def _possible_keys(serializer: Any, picker: Any, key: str, shape: Any) -> tuple[str, ...]:
    from moto.core.serialize import AttributePickerContext

    parent = getattr(shape, "parent", None)
    kept_key = (type(picker), key, id(shape), id(parent))
    kept = _aliases.get(kept_key)
    if kept is not None and kept[1] is shape and kept[2] is parent:
        return kept[0]
    context = AttributePickerContext(
        obj={},  # any plain dict: the providers read its class only
        key=key,
        shape=shape,
        operation_model=serializer.operation_model,
        service_model=serializer.operation_model.service_model,
        key_path=".".join(serializer.path),
    )
    keys = tuple(picker.get_possible_keys(context))
    if len(_aliases) >= KEPT_MEMBERS:
        _aliases.clear()
    _aliases[kept_key] = (keys, shape, parent)
    return keys


def _get_value(original: Any) -> Any:
    from moto.core.serialize import DEFAULT_ALIAS_PROVIDERS, AttributePicker, XFormedAttributePicker
    from moto.core.utils import MISSING, get_value  # type: ignore[attr-defined]

    pickers = (AttributePicker, XFormedAttributePicker)

    def get_value_of_member(self: Any, value: Any, key: str, shape: Any) -> Any:
        picker = self._value_picker
        if (
            type(value) is not dict
            or type(picker) not in pickers
            or picker.alias_providers is not DEFAULT_ALIAS_PROVIDERS  # a list of its own: moto decides
        ):
            return original(self, value, key, shape)
        for possible_key in _possible_keys(self, picker, key, shape):
            member = get_value(value, possible_key, MISSING)
            if member is not MISSING:
                break
        else:
            member = None
        if picker.response_transformers:  # as AttributePicker applies them
            key_path = f"{'.'.join(self.path)}.{key}"
            for transform_path, transform in picker.response_transformers.items():
                if key_path.endswith(transform_path):
                    return transform(member)
        return member

    get_value_of_member.__doc__ = "moto's member pick, the possible keys of a plain dict's member kept."
    return get_value_of_member


def install() -> None:
    """Patch moto's serializer's member pick (idempotent)."""
    from moto.core.serialize import ResponseSerializer

    with _lock:
        if _originals:
            return
        _originals["get_value"] = ResponseSerializer.__dict__["get_value"]
        ResponseSerializer.get_value = _get_value(_originals["get_value"])  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore moto's own member pick (idempotent)."""
    from moto.core.serialize import ResponseSerializer

    with _lock:
        if _originals:
            ResponseSerializer.get_value = _originals.pop("get_value")  # type: ignore[method-assign]
        _aliases.clear()


def installed() -> bool:
    return bool(_originals)
