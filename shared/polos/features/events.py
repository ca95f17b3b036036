"""``polos.features.events``, the official SDK's home of :mod:`polos.events` (the same functions)."""

from polos.events import (
    EventData,
    batch_publish,
    publish,
    stream_topic,
    stream_workflow,
)

__all__ = ["EventData", "batch_publish", "publish", "stream_topic", "stream_workflow"]
