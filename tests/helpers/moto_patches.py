"""The fixture every moto speed patch's parity test uses: the patch off, each test deciding when it is on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest


def patch_off_fixture(patch: ModuleType) -> Callable[..., Any]:
    """A fixture that uninstalls ``patch`` (an ``infra.local.moto_*`` module) for the test and puts it back
    as it was (the in-process stacks install every patch for the whole session)."""

    @pytest.fixture
    def patch_off() -> Iterator[None]:
        was = patch.installed()
        patch.uninstall()
        yield
        (patch.install if was else patch.uninstall)()

    return patch_off


def fresh_table(client: Any, *items: dict[str, Any]) -> None:
    """Table ``t`` (hash key ``pk``) made anew, holding ``items``: each parity round starts from it."""
    if "t" in client.list_tables()["TableNames"]:
        client.delete_table(TableName="t")
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for item in items:
        client.put_item(TableName="t", Item=item)
