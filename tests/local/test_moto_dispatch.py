"""moto's server finds an action's method by testing its one name, with the answer moto's list gives."""

from __future__ import annotations

import boto3

from infra.local import moto_dispatch
from tests.helpers.moto_patches import patch_off_fixture

patch_off = patch_off_fixture(moto_dispatch)


def _response_classes() -> list[type]:
    import moto.dynamodb.responses
    import moto.sqs.responses  # noqa: F401 (their classes are what the stack's requests reach)
    from moto.core.responses import BaseResponse

    found: list[type] = []
    pending: list[type] = [BaseResponse]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending += cls.__subclasses__()
    return found


def test_every_name_gets_the_answer_of_moto_list(patch_off: None) -> None:
    from moto.core.utils import method_names_from_class

    classes = _response_classes()
    checked = 0
    for cls in classes:
        listed = set(method_names_from_class(cls))
        names = moto_dispatch.method_names_from_class(cls)
        for name in {*dir(cls), "no_such_action", "", "__init__", "dispatch", "response_headers"}:
            assert (name in names) == (name in listed), (cls, name)
            checked += 1
    assert len(classes) >= 3 and checked > 250


def test_a_method_added_later_is_found(patch_off: None) -> None:
    from moto.sqs.responses import SQSResponse

    names = moto_dispatch.method_names_from_class(SQSResponse)
    assert "receive_message" in names and "later_action" not in names
    SQSResponse.later_action = lambda self: ""  # type: ignore[attr-defined]
    try:
        assert "later_action" in names
    finally:
        del SQSResponse.later_action  # type: ignore[attr-defined]
    assert "later_action" not in names


def test_requests_reach_their_methods(aws: None, patch_off: None) -> None:
    moto_dispatch.install()
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"][0]["Body"] == "x"
