"""Imports every ORM module so `Base.metadata` knows every table."""

from sendstream.models import (  # noqa: F401
    api_key,
    audit,
    consent,
    contact,
    contact_import,
    contact_list,
    event,
    field,
    idempotency,
    job,
    message,
    sending_domain,
    suppression,
    template,
    template_version,
    user,
    webhook_delivery,
    webhook_endpoint,
    workspace,
)
