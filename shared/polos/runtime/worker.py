"""SQS records → runs: one run per event, exact batch runs, and directly invoked runs.

Each record's outcome is reported on its own (``batchItemFailures``): a record is acknowledged when its run
completed, was already finished, failed for good (``NonRetryableError``, an invalid payload, on any
delivery), or is an invocation whose run does not exist; it is left for SQS to deliver again when the
attempt should be retried or another attempt holds the run. A run failed because its ``max_attempts``
executions are spent has its record sent to the dead-letter queue and deleted (see
``polos.runtime.dead_letters``); the queue's receive count is only a backstop behind it.

Records run concurrently (:mod:`polos.runtime.partial_batch`).
Events of batch workflows are grouped first: the group's runs are formed once (see
``polos.runtime.batches``) and every record of the group awaits the outcome of the run that holds its event.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from polos.aws import observability, overload, settings
from polos.payloads import EventItem
from polos.publish.events import EventRef, EventStore
from polos.publish.messages import WorkflowMessage
from polos.runtime import batches, dead_letters, deferral, event_flow, partial_batch
from polos.runtime.executor import Attempt, AttemptResult, execute
from polos.runtime.journal import Acquired, Journal, scheduled_run_id
from polos.runtime.records import ErrorInfo
from polos.runtime.runs import new_run_id, single_run_id
from polos.schedules import Schedule
from polos.timestamps import parse_utc_iso

if TYPE_CHECKING:
    from polos.app import App
    from polos.definition import Workflow

logger = observability.logger
_T = TypeVar("_T")


def ref_of(event: EventItem) -> EventRef:
    """Where ``event`` is stored."""
    return EventRef(event.topic, event.sequence_id, event.id)


class _LeftForRedelivery(Exception):
    """Marks a record for ``batchItemFailures``: SQS delivers it again (or dead-letters it)."""


@dataclass(frozen=True)
class Delivery:
    """One SQS record, parsed: its message, its workflow and whether SQS will deliver it again."""

    message_id: str
    message: WorkflowMessage
    workflow: Workflow
    final: bool  # the last delivery that executes the run
    exhausted: bool = False  # the message's last receive: settle its run, run nothing
    body: str = ""  # the message as sent (what goes to the dead-letter queue)

    @property
    def batched(self) -> bool:
        """Events of batch workflows run in batch runs; invocations of any workflow run alone."""
        return self.workflow.is_batch and self.message.kind == "event"

    @property
    def run_id(self) -> str:
        """The run of a single event or of a schedule's firing (derived from them, so a duplicate finds the
        same run), or of an invocation or wake-up (named by the message)."""
        if self.message.scheduled_time is not None:
            keyed = self.message.schedule
            return scheduled_run_id(
                self.workflow.id, self.message.scheduled_time, None if keyed is None else keyed["id"]
            )
        return single_run_id(self.message)

    @property
    def work_key(self) -> str:
        """Deliveries with one key are handled together: a batch workflow's events, or one run's records."""
        return f"batch#{self.workflow.id}" if self.batched else f"run#{self.run_id}"


def parse_record(record: dict[str, Any], app: App) -> Delivery:
    """The delivery in an SQS record; ``ValueError`` naming the problem when it cannot be run."""
    message = WorkflowMessage.from_json(str(record.get("body", "")))
    wf = app.get(message.workflow_id)
    if wf is None:
        raise ValueError(
            f"message for workflow {message.workflow_id!r}, which app {app.name!r} does not define"
        )
    _check_queue(record.get("eventSourceARN"), wf.id)
    if message.event is not None and message.event.topic != wf.topic:
        raise ValueError(
            f"event of topic {message.event.topic!r} for workflow {wf.id!r}, triggered by {wf.topic!r}"
        )
    received = int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
    final, exhausted = dead_letters.last_receives(received, wf)
    return Delivery(str(record["messageId"]), message, wf, final, exhausted, str(record.get("body", "")))


def _check_queue(source_arn: str | None, workflow_id: str) -> None:
    """A message must come from its workflow's own queue (when the queue names are known)."""
    prefix = settings.get_settings().queue_url_prefix
    if not source_arn or not prefix:
        return
    queue = source_arn.rsplit(":", 1)[-1]
    expected = (prefix + workflow_id).rsplit("/", 1)[-1]
    if queue != expected:
        raise ValueError(f"message for workflow {workflow_id!r} arrived on queue {queue!r}, not {expected!r}")


def acknowledged(result: AttemptResult) -> bool:
    """Whether the records behind an attempt are done with (``False``: SQS delivers them again).

    ``exhausted`` (a retryable failure on the last executing delivery) is left, so that its message ends in
    the dead-letter queue where it can be redriven; ``failed`` (non-retryable) is done with.
    """
    observability.record_outcome(result)
    return result.outcome in ("completed", "finished", "failed", "missing", "waiting", "cancelled")


class Invocation:
    """One Lambda invocation: records parsed up front; each run (or batch group) handled once.

    Records that lead to the same run (duplicates in one delivery) share one attempt and its outcome, and
    the events of a batch workflow share one :class:`BatchGroup`.
    """

    def __init__(self, app: App, records: list[dict[str, Any]]) -> None:
        self._parsed: dict[str, Delivery | Exception] = {}
        self._shared: dict[str, list[Delivery]] = {}
        self._tasks: dict[str, asyncio.Task[set[str]]] = {}
        self._throttled: set[str] = set()  # work keys during whose work one of our AWS calls was throttled
        self._journal = Journal()
        for record in records:
            message_id = str(record["messageId"])
            try:
                delivery = parse_record(record, app)
            except Exception as exc:  # whatever is wrong with one record must not stop the others
                logger.error(
                    "unusable message; left for the dead-letter queue",
                    extra={"message_id": message_id, "error": f"{type(exc).__name__}: {exc}"},
                )
                self._parsed[message_id] = exc
                continue
            self._parsed[message_id] = delivery
            if not delivery.exhausted:
                self._shared.setdefault(delivery.work_key, []).append(delivery)
        pending = [(each.workflow, each.message) for group in self._shared.values() for each in group]
        self._flow = event_flow.Admissions(pending)  # debounce, throttle, rate limit: before the run

    async def process(self, record: dict[str, Any]) -> str:
        """The record handler: returns when the record is done with (or deferred), raises to leave it."""
        delivery = self._parsed[record["messageId"]]
        if isinstance(delivery, Exception):
            raise delivery
        try:
            return await self._process(delivery)
        except (_LeftForRedelivery, overload.InfrastructureThrottled):
            if delivery.work_key not in self._throttled:
                raise
            return await asyncio.to_thread(self._defer, record, delivery)

    def _defer(self, record: dict[str, Any], delivery: Delivery) -> str:
        """A record left while our AWS calls were throttled: sent again later, spending no receive."""
        try:
            deferral.defer(record, delivery.workflow.id)
        except Exception as exc:
            raise _LeftForRedelivery(f"message {delivery.message_id} not deferred ({exc}); left") from exc
        return "deferred"

    async def _process(self, delivery: Delivery) -> str:
        if delivery.exhausted:
            settle = _watching(self._settle(delivery), self._throttled, delivery.work_key)
            return await _logging_unexpected(settle)
        task = self._tasks.get(delivery.work_key)
        if task is None:
            deliveries = self._shared[delivery.work_key]
            work = BatchGroup(deliveries, self._journal).run() if delivery.batched else self._run(deliveries)
            work = _watching(work, self._throttled, delivery.work_key)
            task = self._tasks[delivery.work_key] = asyncio.ensure_future(_logging_unexpected(work))
        if delivery.message_id in await task:
            if await asyncio.to_thread(self._dead_letter, delivery):
                return "dead-lettered"
            raise _LeftForRedelivery(f"message {delivery.message_id} is left for SQS to deliver again")
        return "acknowledged"

    def _dead_letter(self, delivery: Delivery) -> bool:
        """A record left whose run's attempts are spent goes to the dead-letter queue now (then deleted)."""
        batch = delivery.workflow.is_batch
        return dead_letters.dead_letter_if_marked(delivery.message, delivery.body, batch, self._journal)

    async def _settle(self, delivery: Delivery) -> str:
        """A message's last receive: fail its run if nobody finished it; leave the message unless done."""
        batch = delivery.workflow.is_batch
        done = await asyncio.to_thread(dead_letters.settle_exhausted, delivery.message, batch, self._journal)
        if not done:
            raise _LeftForRedelivery(f"message {delivery.message_id} is left for the dead-letter queue")
        return "acknowledged"

    async def _run(self, deliveries: list[Delivery]) -> set[str]:
        """One attempt of a single-event or invoked run; the message ids to leave when it is not done.

        Every record of the group counts: the run's own message (event, firing or invocation; a duplicate
        of it, a redelivery) says how to run it, and each ``resume`` among them may wake it."""
        first = next((d for d in deliveries if d.message.kind != "resume"), deliveries[0])
        message, wf = first.message, first.workflow
        if wf.flow and await self._flow.admit(wf, first.run_id, [d.message for d in deliveries]) == "done":
            return set()
        final = any(delivery.final for delivery in deliveries)
        wakes = frozenset(d.message.step for d in deliveries if d.message.kind == "resume" and d.message.step)
        refs = [ref_of(message.event)] if message.event is not None else []
        payload = message.event.model_dump(mode="json") if message.event is not None else None
        observability.bind_run(first.run_id, wf.id, [ref.id for ref in refs])
        if message.event is not None:
            attempt = Attempt(wf, first.run_id, "event", refs, payload=payload, final=final, wakes=wakes)
        elif message.kind == "schedule" and message.scheduled_time is not None and not wakes:
            keyed = message.schedule
            schedule = wf.schedule if keyed is None else Schedule(keyed["cron"], keyed["timezone"])
            if schedule is None or (keyed is not None and not wf.schedulable):
                # The schedule was removed by a redeploy since this firing.
                logger.warning("firing of a workflow that has no such schedule now; acknowledged")
                return set()
            fired = parse_utc_iso(message.scheduled_time)
            payload = schedule.payload(
                fired, *((keyed["id"], keyed["key"]) if keyed is not None else (None, None))
            )
            attempt = Attempt(wf, first.run_id, "schedule", payload=payload, final=final)
        else:
            # An invocation or a wake-up: the stored run says what to run (a wake-up never creates it).
            attempt = Attempt(wf, first.run_id, "invoke", final=final, wakes=wakes)
        result = await execute(attempt, self._journal)
        if result.outcome == "claimed" and message.event is not None and result.claimed_by is not None:
            # A batch run claimed the event (the workflow was a batch workflow at its first delivery): the
            # lease's write found the claim in the run item's place.
            done = await self._finish_batch(wf, result.claimed_by, message.event, final)
        else:
            done = acknowledged(result)
        return set() if done else {delivery.message_id for delivery in deliveries}

    async def _finish_batch(self, wf: Workflow, run_id: str, event: EventItem, final: bool) -> bool:
        """An event a batch run claimed, delivered to the workflow now single-event: that run ends it.

        A batch run of this one event is resumed with it as the payload. A batch run of several events
        cannot be resumed by a single-event handler, and running its events again could run them twice: it
        is failed with an error saying so. ``True`` when the delivery is done with.
        """
        observability.bind_run(run_id, wf.id, [event.id])
        items = await asyncio.to_thread(self._journal.query_partition, run_id)
        loaded = Journal.decode_partition(items)
        if loaded is None:
            logger.error("batch run of a claimed event not found; record left for redelivery")
            return False
        if loaded.run.finished:
            logger.info("event finished in a batch run; delivery acknowledged")
            return not loaded.run.dead_letter  # a spent run's message goes to the dead-letter queue
        members = batches.members(items)
        if members == [ref_of(event)]:
            logger.info("event held by a batch run of one; that run finishes it")
            payload = event.model_dump(mode="json")
            attempt = Attempt(wf, run_id, "batch", members, payload=payload, final=final, preloaded=items)
            return acknowledged(await execute(attempt, self._journal))
        owner = uuid.uuid4().hex
        taken = await asyncio.to_thread(
            lambda: self._journal.acquire(
                run_id=run_id,
                workflow_id=wf.id,
                trigger_type="batch",
                event_refs=[],
                owner=owner,
                lease_seconds=settings.get_settings().lease_seconds,
            )
        )
        if not isinstance(taken, Acquired):
            return taken.outcome == "finished"
        error = ErrorInfo(
            "WorkflowShapeChangedError",
            f"workflow {wf.id!r} became single-event while this batch run of {len(members)} events was "
            "unfinished; a single-event workflow cannot resume it, and its events are not run again "
            "(they may have run in part)",
        )
        logger.warning("unfinished batch run failed: its workflow is single-event now")
        counted = taken.run.attempts
        await asyncio.to_thread(
            lambda: self._journal.finish(run_id, owner, "failed", error=error, attempts=counted)
        )
        return True


class BatchGroup:
    """The deliveries of one batch workflow in one invocation, and the batch runs that hold their events.

    Events already claimed resume their batch run (members missing from this delivery come from the event
    store); unclaimed events form one new batch run. A record is left for redelivery unless the run
    holding its event is done with.
    """

    def __init__(self, deliveries: list[Delivery], journal: Journal) -> None:
        self._wf = deliveries[0].workflow
        self._journal = journal
        self._events: dict[EventRef, EventItem] = {}
        self._deliveries: dict[EventRef, list[Delivery]] = {}
        for delivery in deliveries:
            event = delivery.message.event
            if event is None:  # only ``event`` messages are batched
                raise TypeError(f"message {delivery.message_id} of a batch carries no event")
            ref = ref_of(event)
            self._events[ref] = event
            self._deliveries.setdefault(ref, []).append(delivery)

    async def run(self) -> set[str]:
        """Message ids to leave for redelivery."""
        refs = sorted(self._deliveries)
        try:
            found = await asyncio.to_thread(batches.read_owners, self._wf.id, refs)
        except Exception:
            logger.exception(
                "batch claims unreadable; records left for redelivery", extra={"workflow_id": self._wf.id}
            )
            return self._message_ids(refs)
        owners = found.claims
        by_run: dict[str, list[EventRef]] = {}
        for ref, run_id in owners.items():
            by_run.setdefault(run_id, []).append(ref)
        jobs: list[tuple[list[EventRef], Awaitable[bool]]] = []
        left: set[str] = set()
        # Events a single-event run holds (the workflow was single-event when they were first delivered)
        # finish in that run: the batch handler gets them as a batch of one.
        held = {ref: run_id for ref, run_id in found.singles.items() if ref not in owners}
        for ref, run_id in held.items():
            jobs.append(([ref], self._finish_single(run_id, ref)))
        unclaimed = [ref for ref in refs if ref not in owners and ref not in held]
        if unclaimed:
            created = await self._create(unclaimed)
            if created is None:
                left |= self._message_ids(unclaimed)
            else:
                for ref, run_id in created.taken.items():
                    by_run.setdefault(run_id, []).append(ref)
                left |= self._message_ids(created.unclaimed)
                if created.members:
                    jobs.append((created.members, self._start(created)))
        for run_id, delivered in by_run.items():
            jobs.append((delivered, self._resume(run_id, delivered)))
        outcomes = await asyncio.gather(*(self._guarded(job) for _, job in jobs))
        for (delivered, _), done in zip(jobs, outcomes, strict=True):
            if not done:
                left |= self._message_ids(delivered)
        return left

    def _message_ids(self, refs: list[EventRef]) -> set[str]:
        return {delivery.message_id for ref in refs for delivery in self._deliveries.get(ref, [])}

    def _final(self, refs: list[EventRef]) -> bool:
        """The run gets no further delivery when any of its records is on its last one."""
        return any(delivery.final for ref in refs for delivery in self._deliveries.get(ref, []))

    async def _guarded(self, job: Awaitable[bool]) -> bool:
        try:
            return await job
        except Exception:
            logger.exception("batch run attempt crashed; its records are left for redelivery")
            return False

    async def _create(self, refs: list[EventRef]) -> batches.NewBatch | None:
        run_id, owner = new_run_id(), uuid.uuid4().hex
        try:
            created = await asyncio.to_thread(batches.create_batch_run, self._wf.id, run_id, refs, owner)
        except Exception:
            logger.exception(
                "batch run not created; records left for redelivery",
                extra={"workflow_id": self._wf.id, "event_ids": [ref.id for ref in refs]},
            )
            return None
        if created.members:
            observability.count("BatchSize", len(created.members))
        return created

    async def _start(self, created: batches.NewBatch) -> bool:
        members = created.members
        observability.bind_run(created.run_id, self._wf.id, [ref.id for ref in members])
        logger.debug("batch run created", extra={"batch_size": len(members)})  # INFO: its outcome
        events = await self._member_events(members)  # the membership records, not the events in hand
        if events is None:
            return False
        final = self._final(members)
        attempt = Attempt(
            self._wf,
            created.run_id,
            "batch",
            members,
            payload=_batch_payload(events),
            final=final,
            preloaded=created.items,
            lease_owner=created.owner,
        )
        return acknowledged(await execute(attempt, self._journal))

    async def _finish_single(self, run_id: str, ref: EventRef) -> bool:
        observability.bind_run(run_id, self._wf.id, [ref.id])
        logger.info("event held by a single-event run; that run finishes it as a batch of one")
        final = self._final([ref])
        payload = _batch_payload([self._events[ref]])
        attempt = Attempt(self._wf, run_id, "event", [ref], payload=payload, final=final)
        return acknowledged(await execute(attempt, self._journal))

    async def _resume(self, run_id: str, delivered: list[EventRef]) -> bool:
        observability.bind_run(run_id, self._wf.id, [ref.id for ref in delivered])
        items = await asyncio.to_thread(self._journal.query_partition, run_id)
        loaded = Journal.decode_partition(items)
        if loaded is None:
            # Its creating attempt died between claiming the first event and writing the run item.
            owner = uuid.uuid4().hex
            recovered = await asyncio.to_thread(
                batches.recover_batch_run, self._wf.id, run_id, items, owner, delivered
            )
            if recovered is None:
                logger.error("batch run of claimed events not found; records left for redelivery")
                return False
            return await self._start(recovered)
        if loaded.run.finished:
            logger.info(
                "batch run already finished; delivery acknowledged", extra={"status": loaded.run.status}
            )
            return not loaded.run.dead_letter  # a spent run's message goes to the dead-letter queue
        items = await asyncio.to_thread(batches.settle, self._wf.id, run_id, items, set(delivered))
        members = batches.members(items)
        observability.bind_run(run_id, self._wf.id, [ref.id for ref in members])
        present = await self._member_events(members)
        if present is None:
            return False
        final = self._final(delivered)
        attempt = Attempt(
            self._wf, run_id, "batch", members, payload=_batch_payload(present), final=final, preloaded=items
        )
        return acknowledged(await execute(attempt, self._journal))

    async def _member_events(self, members: list[EventRef]) -> list[EventItem] | None:
        """The run's member events: those delivered now, the others from the event store (``None``: gone)."""
        missing = [ref for ref in members if ref not in self._events]
        fetched = await asyncio.to_thread(EventStore().get_many, missing) if missing else []
        found = {**self._events, **{ref_of(event): event for event in fetched}}
        present = [event for event in (found.get(ref) for ref in members) if event is not None]
        if len(present) < len(members):
            logger.error("member events of the batch run are gone; records left for redelivery")
            return None
        return present


async def _logging_unexpected(work: Awaitable[_T]) -> _T:
    """``work``'s result; an exception it raises (an AWS error, a bug) is logged once, with its traceback, at
    ERROR (the records it concerns are then left for SQS to deliver again): the partial batch answer alone
    would say only which records failed, not why."""
    try:
        return await work
    except (_LeftForRedelivery, overload.InfrastructureThrottled):
        raise
    except Exception:
        logger.exception("unexpected error; the run's records are left for SQS to deliver again")
        raise


async def _watching(work: Awaitable[_T], throttled: set[str], key: str) -> _T:
    """``work``, adding ``key`` to ``throttled`` when one of our AWS calls was throttled meanwhile (even
    one that was caught: its records are then deferred, not left; see :mod:`polos.runtime.deferral`)."""
    with overload.watch() as seen:
        try:
            return await work
        finally:
            if seen:
                throttled.add(key)


def _batch_payload(events: list[EventItem]) -> dict[str, Any]:
    ordered = sorted(events, key=lambda event: (event.topic, event.sequence_id))
    return {"events": [event.model_dump(mode="json") for event in ordered]}


def handle(event: dict[str, Any], app: App) -> partial_batch.PartialBatchResponse:
    """Run the records of one SQS event; the records to deliver again are in ``batchItemFailures``."""
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    partial_batch.message_ids(records)  # a record without one is refused before any record runs
    invocation = Invocation(app, records)
    try:
        return partial_batch.process_partial_batch(event, invocation.process)
    finally:
        observability.flush()
