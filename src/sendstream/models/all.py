"""Imports every ORM module so `Base.metadata` knows every table."""

from sendstream.models import (  # noqa: F401
    api_key,
    audit,
    event,
    idempotency,
    job,
    user,
    workspace,
)
