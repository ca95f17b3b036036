"""The seed's workflow definitions import and register unchanged, ``PayloadEvent`` included."""

import re
from pathlib import Path

import polos
import pytest
from polos import BatchEventPayload, EventPayload, PayloadEvent
from polos.app import App, load_app
from polos.errors import WorkflowDefinitionError

ROOT = Path(__file__).resolve().parents[2]

# id -> (topic, batch_size, batch_timeout_seconds, payload type name)
SEED = {
    "user-signup-handler": ("user/signup", 1, None, EventPayload),
    "notification-handler": ("notifications/new", 1, None, EventPayload),
    "create_user": (None, 1, None, "CreateUserInput"),
    "batch-processor": ("analytics/events", 10, 30, BatchEventPayload),
    "immediate-handler": ("order/created", 1, None, EventPayload),
    "batched-handler": ("order/created", 5, 60, BatchEventPayload),
    "high-priority-handler": ("notifications/system", 1, None, EventPayload),
}


def test_public_api_names() -> None:
    for name in (
        "workflow",
        "WorkflowContext",
        "EventPayload",
        "BatchEventPayload",
        "PolosClient",
        "EventItem",
        "PayloadEvent",
        "StepExecutionError",
        "NonRetryableError",
    ):
        assert hasattr(polos, name), name
    assert PayloadEvent is EventPayload


def test_example_app_registers_every_seed_workflow(example_app: App) -> None:
    beyond_the_docs = {
        "trial-reminder",
        "nightly-report",
        "expense-approval",
        "order-fulfillment",
        "send-receipt",
    }  # functions/workflows/durable.py
    assert {wf.id for wf in example_app} == set(SEED) | beyond_the_docs
    for wf_id, (topic, size, window, payload) in SEED.items():
        wf = example_app.get(wf_id)
        assert wf is not None
        assert (wf.topic, wf.batch_size, wf.batch_timeout_seconds) == (topic, size, window), wf_id
        assert wf.is_batch == (payload is BatchEventPayload)
        shown = payload if isinstance(payload, str) else payload.__name__
        assert wf.payload_type.__name__ == shown, wf_id


def test_subscribers_by_topic(example_app: App) -> None:
    assert [wf.id for wf in example_app.subscribers("order/created")] == [
        "batched-handler",
        "immediate-handler",
    ]
    assert [wf.id for wf in example_app.subscribers("user/signup")] == ["user-signup-handler"]
    assert example_app.subscribers("user.signup") == []  # subscribers() takes the canonical form
    assert example_app.get("missing") is None


def test_create_user_payload_is_validated_into_its_model(example_app: App) -> None:
    wf = example_app.get("create_user")
    assert wf is not None
    payload = wf.build_payload({"email": "a@b.c", "name": "Ann"})
    assert (payload.email, payload.name) == ("a@b.c", "Ann")


def test_loading_twice_gives_the_same_workflows() -> None:
    first, second = load_app("workflows"), load_app("workflows")
    assert [wf.id for wf in first] == [wf.id for wf in second]


def test_alternative_topic_example_is_its_own_app(example_app: App) -> None:
    alt = load_app(str(ROOT / "examples" / "high_priority_topic.py"))
    assert {wf.id: wf.topic for wf in alt} == {
        "notification-router": "notifications/new",
        "high-priority-handler": "notifications/high_priority",
    }
    # Both apps have a "high-priority-handler": separately they load, together they clash.
    seed_handler = example_app.get("high-priority-handler")
    assert seed_handler is not None and seed_handler.topic == "notifications/system"
    with pytest.raises(
        WorkflowDefinitionError, match=r"'high-priority-handler' is defined twice in app 'both'"
    ):
        App("both", [*example_app, *alt])


def test_missing_app_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"app module 'no_such_app_xyz' cannot be imported"):
        load_app("no_such_app_xyz")
    with pytest.raises(WorkflowDefinitionError, match=r"app file .*missing.py' does not exist"):
        load_app(str(tmp_path / "missing.py"))


# The user documentation our API implements, kept in the repository so a clean clone checks it; the team's
# kit beside the repository is the source, and the copy must not drift from it.
SEED_DOC = ROOT / "tests" / "fixtures" / "seed-event-triggered-workflows.txt"
KIT_SEED_DOC = ROOT.parent / "shared" / "seed-event-triggered-workflows.txt"
HEADER = re.compile(r"@workflow(?:\([^)]*\))?\s*async def \w+\([^)]*\):")


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_every_seed_declaration_is_in_the_examples_verbatim() -> None:
    headers = HEADER.findall(SEED_DOC.read_text())
    assert len(headers) == 8  # seven workflows, and the alternative-topic handler
    sources = [*(ROOT / "functions" / "workflows").glob("*.py"), ROOT / "examples" / "high_priority_topic.py"]
    ours = squash("".join(path.read_text() for path in sources))
    for header in headers:
        assert squash(header) in ours, header


@pytest.mark.skipif(not KIT_SEED_DOC.is_file(), reason="the team's kit is not beside the repository")
def test_the_repository_copy_of_the_seed_is_the_kits() -> None:
    assert SEED_DOC.read_text() == KIT_SEED_DOC.read_text()
