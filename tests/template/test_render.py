"""`polos template`: deterministic rendering, `--check` against the checked-in files, refused inputs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from polos import EventPayload, WorkflowContext, workflow
from polos.app import App
from polos.aws import settings
from polos.errors import WorkflowDefinitionError
from polos.publish.manifest import Manifest

from infra.cli.main import main
from infra.model import WORKER_TIMEOUT_SECONDS, build_model
from infra.template import (
    MANIFEST_PATH,
    TEMPLATE_PATH,
    TemplateError,
    logical_name,
    render_files,
    render_template,
)

ROOT = Path(__file__).resolve().parents[2]


async def _handler(ctx: WorkflowContext, payload: EventPayload) -> None:
    return None


def _app(*ids: str, topic: str = "render/test") -> App:
    return App("render-test", [workflow(id=wf_id, trigger_on_event=topic)(_handler) for wf_id in ids])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user project with its own app in ``functions/shop.py``, as the current directory."""
    (tmp_path / "functions").mkdir()
    (tmp_path / TEMPLATE_PATH).write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI puts functions/ on the path
    return tmp_path


def write_app(project: Path, batch_size: int, topic: str = "orders/placed") -> None:
    (project / "functions" / "shop.py").write_text(
        textwrap.dedent(
            f"""
            from polos import BatchEventPayload, workflow

            @workflow(
                id="order-digest", trigger_on_event="{topic}",
                batch_size={batch_size}, batch_timeout_seconds=20,
            )
            async def order_digest(ctx, payload: BatchEventPayload):
                return len(payload.events)
            """
        )
    )


def test_checked_in_template_and_manifest_are_current(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["template", "--check"]) == 0
    assert "up to date (12 workflows)" in capsys.readouterr().out


def test_check_fails_with_a_diff_after_batch_size_changes(project: Path, capsys: Any) -> None:
    write_app(project, batch_size=5)
    assert main(["template", "--app", "functions/shop.py"]) == 0
    assert main(["template", "--app", "functions/shop.py", "--check"]) == 0
    rendered = (project / TEMPLATE_PATH).read_text()
    assert "POLOS_APP: shop" in rendered  # the deployed worker imports functions/shop.py as `shop`
    capsys.readouterr()

    write_app(project, batch_size=7)
    assert main(["template", "--app", "functions/shop.py", "--check"]) == 1
    captured = capsys.readouterr()
    assert "--- template.yaml (checked in)\n+++ template.yaml (rendered)" in captured.out
    assert "-      BatchSize: 5\n+      BatchSize: 7\n" in captured.out
    # The manifest carries the batch size too: GET /api/v1/workflows shows it from there.
    assert f"--- {MANIFEST_PATH} (checked in)" in captured.out and '+      "batch_size": 7,' in captured.out
    assert "stale; run `polos template`" in captured.err
    assert (project / TEMPLATE_PATH).read_text() == rendered  # --check writes nothing

    assert main(["template", "--app", "functions/shop.py"]) == 0
    assert main(["template", "--app", "functions/shop.py", "--check"]) == 0


def test_check_reports_a_stale_manifest(project: Path, capsys: Any) -> None:
    write_app(project, batch_size=5)
    assert main(["template", "--app", "functions/shop.py"]) == 0
    write_app(project, batch_size=5, topic="orders/paid")
    capsys.readouterr()
    assert main(["template", "--app", "functions/shop.py", "--check"]) == 1
    out = capsys.readouterr().out
    assert f"--- {MANIFEST_PATH} (checked in)" in out
    assert '-      "topic": "orders/placed"\n+      "topic": "orders/paid"' in out


def test_app_outside_functions_is_refused(project: Path, capsys: Any) -> None:
    write_app(project, batch_size=5)
    (project / "shop.py").write_text((project / "functions" / "shop.py").read_text())
    assert main(["template", "--app", "shop.py"]) == 2
    assert "outside" in capsys.readouterr().err
    assert (project / TEMPLATE_PATH).read_text() == ""


def test_app_without_workflows_is_refused(project: Path, capsys: Any) -> None:
    (project / "functions" / "empty.py").write_text("X = 1\n")
    assert main(["template", "--app", "functions/empty.py"]) == 2
    assert "defines no workflows" in capsys.readouterr().err


def test_rendering_is_deterministic_and_independent_of_definition_order() -> None:
    first = _app("render-b", "render-a")
    second = App("render-test", list(reversed(list(first))))
    assert render_files(build_model(first), "app") == render_files(build_model(second), "app")
    text = render_files(build_model(first), "app")[TEMPLATE_PATH]
    assert text.index("QueueRenderA:") < text.index("QueueRenderB:")


def test_manifest_is_the_models_and_tells_subscribers() -> None:
    manifest = Manifest.from_json((ROOT / MANIFEST_PATH).read_text())
    assert manifest.subscribers("order/created") == ["batched-handler", "immediate-handler"]
    assert manifest.workflows["batch-processor"].batch is True
    assert manifest.workflows["create_user"].topic is None


def test_every_runtime_setting_is_set_by_the_template() -> None:
    doc = render_template(build_model(_app("render-env")), "app")
    env = doc["Globals"]["Function"]["Environment"]["Variables"]
    names = {value for name, value in vars(settings).items() if name.startswith("ENV_")}
    # The API function's own, with a schedule=True workflow (tests/official/test_schedules_api.py).
    names -= {settings.ENV_SCHEDULE_GROUP, settings.ENV_SCHEDULER_ROLE_ARN}
    assert names <= env.keys()
    assert env[settings.ENV_LEASE_SECONDS] == str(WORKER_TIMEOUT_SECONDS)
    assert env[settings.ENV_APP] == "app"
    assert env[settings.ENV_MANIFEST_PATH] == Path(MANIFEST_PATH).name


@pytest.mark.parametrize(
    ("workflow_id", "name"),
    [("batch-processor", "BatchProcessor"), ("create_user", "CreateUser"), ("x", "X"), ("9-lives", "9Lives")],
)
def test_logical_names(workflow_id: str, name: str) -> None:
    assert logical_name(workflow_id) == name


def test_workflows_sharing_a_logical_name_are_refused() -> None:
    with pytest.raises(TemplateError, match=r"'render-clash' and 'render_clash' both map to .*'RenderClash'"):
        render_template(build_model(_app("render-clash", "render_clash")), "app")


def test_apps_beyond_one_stack_are_refused() -> None:
    """The quota that binds first says so before deploying: IAM's 10,240 characters of inline policy per
    role (the API's role names each workflow queue and each dead-letter queue by ARN): 51 workflows with
    10-character ids fit, the 52nd does not. CloudFormation's 200 outputs would bind at 98."""
    ids = [f"render-{i:03d}" for i in range(52)]
    render_template(build_model(_app(*ids[:51])), "app")
    refused = r"52 workflows: the role of ApiFunction .* 10240 per role.*split the app"
    with pytest.raises(TemplateError, match=refused):
        render_template(build_model(_app(*ids)), "app")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 10, "batch_timeout_seconds": 301}, "batch_timeout_seconds=301"),
        ({"batch_size": 10_001, "batch_timeout_seconds": 10}, "batch_size=10001"),
        ({"batch_size": 11}, "batch_size=11 needs batch_timeout_seconds >= 1"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": 5, "batch_timeout_seconds": -1}, "batch_timeout_seconds=-1"),
    ],
)
def test_values_the_template_cannot_express_fail_at_decoration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=message):
        workflow(id="render-limits", trigger_on_event="render/limits", **options)(_handler)


def test_rendered_yaml_is_plain() -> None:
    """Long-form intrinsics and no anchors: any YAML reader (and CloudFormation) reads the same document."""
    text = (ROOT / TEMPLATE_PATH).read_text()
    assert "!Ref" not in text and "!Sub" not in text and "&id" not in text and "*id" not in text
    assert yaml.safe_load(text)["Transform"] == "AWS::Serverless-2016-10-31"


def test_the_api_functions_reserved_concurrency_is_a_parameter_off_by_default() -> None:
    """``ApiReservedConcurrency`` (0: none) reserves concurrency for the API function only."""
    doc = render_template(build_model(_app("a")), "app")
    parameter = doc["Parameters"]["ApiReservedConcurrency"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 0, 0)
    condition = doc["Conditions"]["ReservesApiConcurrency"]
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ApiReservedConcurrency"}, "0"]}]}
    functions = {
        name: resource["Properties"]
        for name, resource in doc["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    reserving = {name for name, props in functions.items() if "ReservedConcurrentExecutions" in props}
    assert reserving == {"ApiFunction"}
    assert functions["ApiFunction"]["ReservedConcurrentExecutions"] == {
        "Fn::If": ["ReservesApiConcurrency", {"Ref": "ApiReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
