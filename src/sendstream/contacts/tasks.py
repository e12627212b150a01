"""Every job kind of the contacts domain, imported in one place."""

from __future__ import annotations

from sendstream.contacts import import_tasks, optin

__all__ = ["import_tasks", "optin"]
