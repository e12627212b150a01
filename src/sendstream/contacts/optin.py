"""Double opt-in: the confirmation link and the job that mails it.

The link carries a stateless token: workspace, contact and list ids and an
expiry, signed with HMAC-SHA256 under `subkey("confirmation-link")`. Nothing
is stored per link; a token is valid when its signature matches and it has
not expired, and what it confirms is decided by the subscription's state when
it is followed (only `unconfirmed` becomes `subscribed`).

`contacts.send_confirmation` takes ids, reloads, and sends nothing unless the
subscription is still `unconfirmed`, so a retried or duplicated job is
harmless. Mail goes through the SMTP relay in `settings.mail` until the
delivery domain takes over.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Final

import aiosmtplib
import structlog

from sendstream.contacts.errors import ConfirmationLinkExpired, ConfirmationLinkInvalid
from sendstream.contacts.list_repository import list_repository, subscription_repository
from sendstream.core.jobs import Cancel, JobContext, job
from sendstream.core.keys import subkey
from sendstream.core.settings import MailSettings, Settings, get_settings
from sendstream.models.contact import Contact
from sendstream.models.contact_list import ContactList

SEND_CONFIRMATION: Final = "contacts.send_confirmation"
KEY_PURPOSE: Final = "confirmation-link"
# Bumped if the layout ever changes, so old links fail cleanly, never misread.
_VERSION: Final = b"\x01"
# version, workspace id, contact id, list id, expiry (Unix seconds, unsigned).
_LAYOUT: Final = struct.Struct(">c16s16s16sQ")

log = structlog.get_logger("sendstream.contacts.optin")


@dataclass(frozen=True)
class ConfirmationClaim:
    workspace_id: uuid.UUID
    contact_id: uuid.UUID
    list_id: uuid.UUID
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload: bytes, settings: Settings | None = None) -> bytes:
    return hmac.new(subkey(KEY_PURPOSE, settings), payload, hashlib.sha256).digest()


def make_token(
    workspace_id: uuid.UUID,
    contact_id: uuid.UUID,
    list_id: uuid.UUID,
    expires_at: datetime,
    settings: Settings | None = None,
) -> str:
    payload = _LAYOUT.pack(
        _VERSION,
        workspace_id.bytes,
        contact_id.bytes,
        list_id.bytes,
        max(0, int(expires_at.timestamp())),
    )
    return f"{_b64(payload)}.{_b64(_sign(payload, settings))}"


def read_token(token: str, *, now: datetime | None = None) -> ConfirmationClaim:
    """The token's claim, or `ConfirmationLinkInvalid` (malformed, tampered
    with, signed under another key) / `ConfirmationLinkExpired`."""
    body, dot, signature = token.partition(".")
    try:
        if not dot or not body or not signature:
            raise ValueError
        payload = _unb64(body)
        presented = _unb64(signature)
        fields = _LAYOUT.unpack(payload)
    except (ValueError, binascii.Error, struct.error):
        raise ConfirmationLinkInvalid("the link is incomplete or garbled") from None
    if not hmac.compare_digest(presented, _sign(payload)):
        raise ConfirmationLinkInvalid("its signature does not match")
    version, ws, contact, list_id, expiry = fields
    if version != _VERSION:
        raise ConfirmationLinkInvalid("it was made by another version of Sendstream")
    expires_at = datetime.fromtimestamp(expiry, UTC)
    if (now or datetime.now(UTC)) >= expires_at:
        raise ConfirmationLinkExpired(expires_at.isoformat())
    return ConfirmationClaim(
        uuid.UUID(bytes=ws), uuid.UUID(bytes=contact), uuid.UUID(bytes=list_id), expires_at
    )


def public_base_url(settings: Settings) -> str:
    base = settings.mail.public_url or settings.api.public_url
    if not base:
        base = f"http://{settings.api.host}:{settings.api.port}"
    return base.rstrip("/")


def confirmation_link(token: str, settings: Settings) -> str:
    return f"{public_base_url(settings)}/v1/confirm/{token}"


def confirmation_prompt(list_name: str) -> str:
    """The words the person agrees to by confirming (kept on the consent record)."""
    return f"Yes, subscribe me to {list_name}."


def build_confirmation_message(
    contact: Contact, contact_list: ContactList, link: str, mail: MailSettings, ttl_hours: int
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"Confirm your subscription to {contact_list.name}"
    message["From"] = mail.from_address
    message["To"] = contact.email
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=_domain_of(mail.from_address))
    # Tells auto-responders not to answer (RFC 3834).
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        f"Please confirm that you want to receive {contact_list.name}.\n"
        "\n"
        f"Open this link and press the button to confirm:\n{link}\n"
        "\n"
        f"The link is valid for {ttl_hours} hours. If you did not ask for this, ignore this "
        "mail: you will not be subscribed and will get no more mail about it.\n"
    )
    return message


def _domain_of(address: str) -> str | None:
    _, _, rest = address.rpartition("@")
    domain = rest.strip().rstrip(">").strip()
    return domain or None


async def deliver(message: EmailMessage, mail: MailSettings) -> None:
    """Hand the message to the relay. A permanent refusal (5xx) cancels the
    job, since retrying cannot help; anything else raises and is retried."""
    try:
        await aiosmtplib.send(
            message,
            hostname=mail.host,
            port=mail.port,
            username=mail.username,
            password=mail.password.get_secret_value() if mail.password else None,
            start_tls=mail.starttls,
            use_tls=mail.use_tls,
            timeout=mail.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        raise Cancel(f"the relay refused the recipient: {exc}") from exc
    except aiosmtplib.SMTPResponseException as exc:
        if 500 <= exc.code < 600:
            raise Cancel(f"the relay refused the message: {exc.code} {exc.message}") from exc
        raise


def _payload_id(ctx: JobContext, key: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(ctx.job.payload[key]))
    except (KeyError, ValueError):
        raise Cancel(f"payload has no valid {key!r}") from None


@job(SEND_CONFIRMATION, max_attempts=8, timeout=120)
async def send_confirmation(ctx: JobContext) -> None:
    """Mail the confirmation link, unless the subscription is no longer pending
    (confirmed, unsubscribed, deleted, erased) by the time the job runs."""
    workspace_id = _payload_id(ctx, "workspace_id")
    contact_id = _payload_id(ctx, "contact_id")
    list_id = _payload_id(ctx, "list_id")
    session = ctx.session
    subscription = await subscription_repository.get(session, workspace_id, contact_id, list_id)
    if subscription is None or subscription.status != "unconfirmed":
        log.info(
            "optin.confirmation_skipped",
            contact_id=str(contact_id),
            list_id=str(list_id),
            status=subscription.status if subscription else None,
        )
        return
    contact = await subscription_repository.find_contact(session, workspace_id, contact_id)
    contact_list = await list_repository.get(session, workspace_id, list_id)
    if contact is None or contact_list is None:
        return
    settings = get_settings()
    ttl = settings.mail.confirmation_ttl_hours
    token = make_token(
        workspace_id, contact_id, list_id, datetime.now(UTC) + timedelta(hours=ttl), settings
    )
    message = build_confirmation_message(
        contact, contact_list, confirmation_link(token, settings), settings.mail, ttl
    )
    await deliver(message, settings.mail)
    log.info("optin.confirmation_sent", contact_id=str(contact_id), list_id=str(list_id))
