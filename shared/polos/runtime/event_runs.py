"""Single-event runs listed from their topic's events: such a run has no ``by_workflow`` index entry.

The run of a single-event workflow for one event is ``event_run_id(workflow, topic, sequence_id)``, so the
topic's stored events, read newest first, name every such run: a listing reads them as one more stream of
entries (one per event and single-event workflow of the topic), placed at the event's ``created_at`` (when
it was published), and fetches the run items like the index's. An event without a run (debounced, not
delivered yet, a batch run's claim) names an item that is not there and is passed over. A topic's events are
not strictly in ``created_at`` order (a publish stamps its events before it reserves their sequence ids), so
a cursor continues each topic's stream at the exact event it stopped at (:class:`Cursor`), never by time.
"""

from __future__ import annotations

from collections.abc import Iterator

from polos.payloads import utc_iso
from polos.publish import manifest
from polos.publish.events import EventStore
from polos.runtime.journal import event_run_id

# A listed entry: (created_at, run id, topic, sequence id); topic "" for an index entry (polos.runtime.runs).
Entry = tuple[str, str, str, int]
Position = tuple[int, str]  # in a topic's stream: the entries after this (sequence id, run id), newest first


def single_event_topics(workflow_ids: list[str]) -> dict[str, list[str]]:
    """The topics of the single-event workflows among ``workflow_ids``, each with those workflows."""
    workflows = manifest.current().workflows
    topics: dict[str, list[str]] = {}
    for workflow_id in workflow_ids:
        entry = workflows.get(workflow_id)
        if entry is not None and entry.topic is not None and not entry.batch:
            topics.setdefault(entry.topic, []).append(workflow_id)
    return topics


def start(topic: str, position: Position | None, before: tuple[str, str] | None) -> Position:
    """Where a topic's stream starts: ``position`` (a cursor's), else above the events older than
    ``before`` (found by a binary search over the topic's blocks, so a time range far back reads no more
    than a block of newer events), else above its last reserved event."""
    if position is not None:
        return position
    store = EventStore()
    last = store.last_reserved(topic) if before is None else store.sequence_before(topic, before[0])
    return last + 1, ""


def entries(
    topic: str,
    workflow_ids: list[str],
    position: Position,
    before: tuple[str, str] | None,
    after: str | None,
    page_items: int,
) -> Iterator[Entry]:
    """The entries of ``topic``'s events after ``position``: per event, one per workflow of
    ``workflow_ids`` (by run id, descending), older than ``before`` (``(created_at, run id)``). The stream
    ends at the first event older than ``after``, or where the topic's stored events end. Events are read
    ``page_items`` at a time as the merge asks for them."""
    for sequence_id, event in EventStore().newest_first(topic, position[0], page_items):
        if event is None:  # a gap marker
            continue
        stamp = utc_iso(event.created_at)
        if after is not None and stamp < after:
            return
        for run_id in sorted((event_run_id(w, topic, sequence_id) for w in workflow_ids), reverse=True):
            if (sequence_id, run_id) >= position or (before is not None and (stamp, run_id) >= before):
                continue
            yield stamp, run_id, topic, sequence_id
