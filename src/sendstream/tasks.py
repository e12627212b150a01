"""Every domain's job kinds, imported in one place so a worker (and any
process that enqueues) knows them all. Add each new domain's `tasks` module."""

from __future__ import annotations

from sendstream.bounces import tasks as bounces_tasks
from sendstream.contacts import tasks as contacts_tasks
from sendstream.jobs import tasks as jobs_tasks
from sendstream.webhooks import tasks as webhooks_tasks

__all__ = ["bounces_tasks", "contacts_tasks", "jobs_tasks", "webhooks_tasks"]
