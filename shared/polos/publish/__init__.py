"""The publish side: the event store, publish idempotency, fan-out to workflow queues, the manifest."""
