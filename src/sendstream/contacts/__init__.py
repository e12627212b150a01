"""Contacts: the store every other domain reads and writes.

- One contact per workspace per matching key (`addresses.normalize_address`);
  custom field values validated by `values` against the workspace's fields.
- Every change of consent writes a `ConsentRecord` (`consent.record_consent`)
  in the same transaction; records are never updated.
- Every change emits its event through the outbox (`contact.created`,
  `contact.updated` with old and new values, `contact.deleted`,
  `contact.subscribed`, `contact.unsubscribed`, `contact.erased`); a
  contact's timeline is the events whose subject is the contact.
- Erased addresses survive only as keyed hashes in `suppressions`; no write
  brings them back without an explicit new opt-in.
- The suppression list (`suppression`): addresses and whole domains never
  mailed, with reason and source; `suppression.suppressed_reasons` answers
  for a batch of matching keys in one query (delivery calls it).
"""
