"""Tenants, users, API keys and the audit log.

Contracts:
- Every tenant-owned query takes `workspace_id`; another workspace's id is a
  404, never a 403 (tests/test_tenant_isolation.py walks every route).
- API keys are `ss_<prefix>_<secret>`: the prefix finds the row, only a SHA-256
  of the key is stored, the secret is shown once (`api_key_service.create_key`).
- Routes authenticate with `require_scope("x:y")` (auth.py); `admin` implies
  every scope in scopes.py. It rate-limits, claims the Idempotency-Key and, for
  mutating methods, writes the audit entry in the request's own transaction.
- A workspace always keeps one active owner (409 `last_owner`).
"""
