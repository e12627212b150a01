"""Events: the workspace's event stream as an API.

- `GET /v1/events` reads the outbox (`core.outbox`, table `events`) in
  position order: per workspace, positions are gapless and in commit order,
  so a client that remembers the last position it handled and asks for
  `after_position` of it misses nothing (the way to catch up after missed
  webhooks). Filters: type (exact or `prefix.*`), contact, message, time.
- Later: Segment-compatible ingestion and the event-log backends
  (ARCHITECTURE.md) live here too.
"""
