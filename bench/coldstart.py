"""Cold start: fresh-process import time of each Lambda handler module next to ``import boto3`` alone.

Each sample is a new interpreter that puts the function's directory, ``functions/`` and ``shared/`` (the
layer) on ``sys.path`` as Lambda does, sets the functions' environment, and times only the ``import``
statement (interpreter start-up is the same for every row and is left out). Samples of all modules are
interleaved so drift on a busy machine hits each alike; the figure is the median.

*Import + first invocation* times the import and then one call of the handler with a typical event (a
publish, an SQS record, a bearer key), every AWS request answered ``{}`` at once by a botocore
``before-send`` hook (no network, no moto), except the API key's GetItem (the bench's key) and the events
counter's and the run lease's UpdateItem, so that the first calls go the whole way (the API's publish is
stored and fanned out, the worker's run completes) and an import merely deferred to them is not a saving.
Handlers that do not exist (e.g. an authorizer folded into the API) are skipped.

*No bytecode* (``measure_without_bytecode``) is the import as Lambda ran it before the build shipped
bytecode: Lambda's code directories are read-only, so each cold start compiled every module of the layer
and of the function package from source. The probe imports the handler from a copy of ``functions/`` and
of the layer (``shared/polos`` and the installed distributions ``shared/requirements.txt`` pulls in, botocore
among them) holding no ``__pycache__``, with ``-B`` so that no sample writes one; boto3 and the standard
library stay compiled, as the runtime ships them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra.model import API_FUNCTION, WORKER_FUNCTION

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ("api", "worker")
# A first invocation has its function's whole timeout left (the clients' retry budget is cut from it).
_REMAINING_MS = {
    f"functions/{name}/app.py": spec.timeout_seconds * 1000
    for name, spec in (("api", API_FUNCTION), ("worker", WORKER_FUNCTION))
}
BASELINE = "boto3"
NO_BYTECODE = ", no bytecode"  # label suffix of a target imported from sources alone
LAYER_REQUIREMENTS = ROOT / "shared" / "requirements.txt"
KEY_ID, KEY_SECRET = "0" * 16, "1" * 64  # the bench's API key (the stubbed keys table holds it)
KEYS_TABLE, EVENTS_TABLE, RUNS_TABLE = "polos-api-keys", "polos-events", "polos-runs"

_PROBE = (
    "import sys, time\n"
    "sys.path[:0] = {paths!r}\n"
    "started = time.perf_counter()\n"
    "import {module}\n"
    "print(time.perf_counter() - started)\n"
)
# The same, then one invocation with AWS answered "{{}}" (botocore's before-send hook short-circuits the
# request; see ``_answers`` for the exceptions). The hook is registered on botocore's built-in handlers, so
# every session made later has it.
_INVOKE_PROBE = (
    "import sys, time, json\n"
    "sys.path[:0] = {paths!r}\n"
    "started = time.perf_counter()\n"
    "import {module}\n"
    "import botocore.handlers\n"
    "from botocore.awsrequest import AWSResponse\n"
    "answers = {answers!r}\n"
    "class Raw:\n"
    "    def __init__(self, body):\n"
    "        self.body = body\n"
    "    def stream(self, **kw):\n"
    "        yield self.body\n"
    "def answer(request, **kw):\n"
    "    target = (request.headers.get('X-Amz-Target') or b'').decode().rsplit('.', 1)[-1]\n"
    "    table = json.loads(request.body or b'{{}}').get('TableName') if target else None\n"
    "    body = answers.get(f'{{target}} {{table}}', b'{{}}')\n"
    "    return AWSResponse(request.url, 200, {{'content-type': 'application/x-amz-json-1.0'}}, Raw(body))\n"
    "botocore.handlers.BUILTIN_HANDLERS.append(('before-send', answer))\n"
    "class Context:\n"
    "    function_name = 'polos-bench'; function_version = '$LATEST'; memory_limit_in_mb = 512\n"
    "    invoked_function_arn = 'arn:aws:lambda:us-east-1:123456789012:function:polos-bench'\n"
    "    aws_request_id = 'bench'; log_group_name = 'g'; log_stream_name = 's'\n"
    "    def get_remaining_time_in_millis(self): return {remaining_ms}\n"
    "try:\n"
    "    {module}.handler(json.loads({event!r}), Context())\n"
    "except Exception as exc:  # an answer of {{}} may not satisfy the handler: the path ran up to here\n"
    "    print('first call raised', repr(exc), file=sys.stderr)\n"
    "print(time.perf_counter() - started)\n"
)


@dataclass(frozen=True)
class Target:
    """What to import and from where; ``event``: the JSON of its first invocation, timed when ``invoke``."""

    label: str
    module: str
    paths: tuple[str, ...]
    event: str = "{}"
    invoke: bool = False
    bytecode: bool = True  # False: -B, and ``paths`` hold no __pycache__ (every module compiled)

    @property
    def invoking(self) -> Target:
        """This target timed to the end of its first invocation."""
        return dataclasses.replace(self, label=f"{self.label} + 1st call", invoke=True)


def first_events() -> dict[str, dict[str, object]]:
    """A typical first event of each handler (payload 2.0 HTTP requests, an SQS record of the example app)."""
    from polos.payloads import EventItem
    from polos.publish.messages import WorkflowMessage

    key = f"pk_{KEY_ID}_{KEY_SECRET}"
    http = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/api/v1/events/publish",
        "rawQueryString": "",
        "headers": {"authorization": f"Bearer {key}", "content-type": "application/json"},
        "requestContext": {
            "http": {"method": "POST", "path": "/api/v1/events/publish", "sourceIp": "192.0.2.1"},
            "requestId": "bench",
            "routeKey": "$default",
            "stage": "$default",
            "authorizer": {"lambda": {"polos_key_id": KEY_ID}},
        },
        "body": json.dumps({"topic": "order/created", "events": [{"data": {"order_id": "o-1"}}]}),
        "isBase64Encoded": False,
    }
    stored = EventItem(
        id="evt_bench",
        sequence_id=1,
        topic="order/created",
        data={"order_id": "o-1"},
        created_at="2026-01-01T00:00:00Z",
    )
    body = WorkflowMessage(workflow_id="immediate-handler", kind="event", event=stored).to_json()
    record = {
        "messageId": "m-1",
        "receiptHandle": "r-1",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:polos-immediate-handler",
        "awsRegion": "us-east-1",
    }
    return {"api": http, "authorizer": {**http, "type": "REQUEST"}, "worker": {"Records": [record]}}


@dataclass(frozen=True)
class ImportTime:
    """Median import seconds of one target over ``samples`` fresh processes."""

    target: Target
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def targets() -> list[Target]:
    """``import boto3`` and the handler modules (``functions/<name>/app.py``)."""
    shared, functions = str(ROOT / "shared"), str(ROOT / "functions")
    events = first_events()
    found = [Target(BASELINE, "boto3", ())]
    for name in HANDLERS:
        paths = (str(ROOT / "functions" / name), functions, shared)
        found.append(Target(f"functions/{name}/app.py", "app", paths, json.dumps(events[name])))
    return found


def layer_distributions() -> list[importlib.metadata.Distribution]:
    """The installed distributions ``shared/requirements.txt`` pulls in (extras and markers followed):
    what `sam build` puts in the layer besides ``polos``."""
    pending = [
        Requirement(line)
        for line in (raw.split("#", 1)[0].strip() for raw in LAYER_REQUIREMENTS.read_text().splitlines())
        if line
    ]
    found: dict[str, importlib.metadata.Distribution] = {}
    followed: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if (name, frozenset(requirement.extras)) in followed:
            continue
        followed.add((name, frozenset(requirement.extras)))
        distribution = found.setdefault(name, importlib.metadata.distribution(name))
        for spec in distribution.requires or []:
            dependency = Requirement(spec)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in extras):
                pending.append(dependency)
    return [found[name] for name in sorted(found)]


@contextmanager
def source_only_code() -> Iterator[Path]:
    """A temporary ``functions/`` and ``layer/`` (polos and its distributions) without any bytecode."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    with tempfile.TemporaryDirectory(prefix="polos-no-bytecode-") as tmp:
        root = Path(tmp)
        shutil.copytree(ROOT / "functions", root / "functions", ignore=skip)
        shutil.copytree(ROOT / "shared" / "polos", root / "layer" / "polos", ignore=skip)
        for distribution in layer_distributions():
            for file in distribution.files or ():
                if file.parts[0] == ".." or "__pycache__" in file.parts or file.suffix == ".pyc":
                    continue  # scripts installed outside site-packages; bytecode
                target = root / "layer" / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(str(distribution.locate_file(file))), target)
        yield root


def measure_without_bytecode(runs: int = 11, invoke: bool = False) -> list[ImportTime]:
    """``measure`` of boto3 and each handler, the handlers imported from ``source_only_code()``."""
    with source_only_code() as root:
        chosen = [Target(BASELINE, "boto3", ())]
        for target in targets()[1:]:
            name = Path(target.paths[0]).name
            paths = (str(root / "functions" / name), str(root / "functions"), str(root / "layer"))
            chosen.append(
                dataclasses.replace(target, label=target.label + NO_BYTECODE, paths=paths, bytecode=False)
            )
        return measure(runs, chosen, invoke)


def _answers() -> dict[str, bytes]:
    """What the stub answers other than ``{}``, by ``"<operation> <table>"``: the bench key's GetItem (an
    active key) and the events counter's UpdateItem (so a publish goes on to store and fan out)."""
    key = {
        "pk": {"S": KEY_ID},
        "name": {"S": "bench"},
        "secret_sha256": {"S": hashlib.sha256(KEY_SECRET.encode()).hexdigest()},
        "created_at": {"S": "2026-01-01T00:00:00Z"},
    }
    run = {  # the run item as the lease's UpdateItem leaves it (the attempt's other writes ignore it)
        "pk": {"S": "run#bench"},
        "sk": {"S": "run"},
        "wf": {"S": "immediate-handler"},
        "status": {"S": "running"},
        "attempts": {"N": "1"},
        "lease_until": {"N": "4102444800"},  # 2100: the attempt never stops for its lease
        "trigger_type": {"S": "event"},
        "created_at": {"S": "2026-01-01T00:00:00Z"},
        "updated_at": {"S": "2026-01-01T00:00:00Z"},
    }
    return {
        f"GetItem {KEYS_TABLE}": json.dumps({"Item": key}).encode(),
        f"UpdateItem {EVENTS_TABLE}": json.dumps({"Attributes": {"last": {"N": "1"}}}).encode(),
        f"UpdateItem {RUNS_TABLE}": json.dumps({"Attributes": run}).encode(),
    }


def lambda_env() -> dict[str, str]:
    """The environment a deployed function sees (names are placeholders; nothing is called)."""
    from polos.aws import settings

    from infra.template import FIXED_ENVIRONMENT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POLOS_", "POWERTOOLS_"))}
    env.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_LAMBDA_FUNCTION_NAME": "polos-bench",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            # Lambda gives every function its role's session credentials in the environment.
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
            **FIXED_ENVIRONMENT,
            "LOG_LEVEL": "INFO",
            settings.ENV_EVENTS_TABLE: EVENTS_TABLE,
            settings.ENV_RUNS_TABLE: RUNS_TABLE,
            settings.ENV_KEYS_TABLE: KEYS_TABLE,
            settings.ENV_IDEMPOTENCY_TABLE: "polos-idempotency",
            settings.ENV_QUEUE_URL_PREFIX: "https://sqs.us-east-1.amazonaws.com/123456789012/polos-",
            settings.ENV_MANIFEST_PATH: str(ROOT / "functions" / "polos_manifest.json"),
            settings.ENV_APP: "workflows",
        }
    )
    return env


def _run(target: Target, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    if not target.invoke:
        code = _PROBE.format(paths=list(target.paths), module=target.module)
    else:
        code = _INVOKE_PROBE.format(
            paths=list(target.paths),
            module=target.module,
            event=target.event,
            answers=_answers(),
            remaining_ms=_REMAINING_MS.get(target.label.removesuffix(" + 1st call"), 10_000),
        )
    # -I: no user site, no PYTHON* variables, and the working directory is not on sys.path.
    flags = ("-I",) if target.bytecode else ("-I", "-B")
    return subprocess.run(
        [sys.executable, *flags, *extra, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def sample(target: Target, env: dict[str, str]) -> float:
    """Seconds one fresh process spends importing ``target``."""
    done = _run(target, env)
    if done.returncode != 0:
        raise RuntimeError(f"importing {target.label} failed:\n{done.stderr.strip()[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def measure(runs: int = 11, chosen: list[Target] | None = None, invoke: bool = False) -> list[ImportTime]:
    """Median import times, ``runs`` interleaved samples each (``invoke``: to the end of the first call).
    Targets that do not exist are skipped."""
    env = lambda_env()
    present = [t for t in (chosen or targets()) if not t.paths or Path(t.paths[0], "app.py").is_file()]
    if invoke:
        present = [t if not t.paths else t.invoking for t in present]
    samples: dict[str, list[float]] = {t.label: [] for t in present}
    for _ in range(runs):
        for target in present:
            samples[target.label].append(sample(target, env))
    return [ImportTime(t, tuple(samples[t.label])) for t in present]


@dataclass(frozen=True)
class ImportCost:
    """One line of ``python -X importtime``: a module and its cumulative import microseconds."""

    module: str
    depth: int
    self_us: int
    cumulative_us: int


def profile(target: Target) -> list[ImportCost]:
    """``python -X importtime`` of one target: its module and everything it imported, in import order."""
    done = _run(target, lambda_env(), "-X", "importtime")
    if done.returncode != 0:
        raise RuntimeError(f"profiling {target.label} failed:\n{done.stderr.strip()[-2000:]}")
    costs = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line.removeprefix("import time:").split("|", 2)
        depth = (len(name) - len(name.lstrip())) // 2
        costs.append(ImportCost(name.strip(), depth, int(self_us), int(cumulative)))
    # A module's line follows its imports'; interpreter start-up (site, ...) comes before the target's.
    end = max(i for i, cost in enumerate(costs) if cost.depth == 0 and cost.module == target.module)
    start = end
    while start > 0 and costs[start - 1].depth > 0:
        start -= 1
    return costs[start : end + 1]


def heaviest(costs: list[ImportCost], limit: int = 8, max_depth: int = 2) -> list[ImportCost]:
    """The most expensive imports at most ``max_depth`` levels below the handler module."""
    shallow = [c for c in costs if 0 < c.depth <= max_depth]
    return sorted(shallow, key=lambda c: c.cumulative_us, reverse=True)[:limit]


def main() -> None:  # pragma: no cover - convenience: python -m bench.coldstart
    for invoke in (False, True):
        for result in measure(runs=5, invoke=invoke):
            print(json.dumps({"target": result.target.label, "median_ms": round(result.median * 1000, 1)}))


if __name__ == "__main__":  # pragma: no cover
    main()
