"""HTTP routes of the contacts domain, mounted under /v1."""

from __future__ import annotations

from fastapi import APIRouter

from sendstream.contacts.gdpr_router import router as gdpr_router
from sendstream.contacts.import_router import router as import_router
from sendstream.contacts.lists_router import router as lists_router
from sendstream.core.http import UnitOfWorkRoute

router = APIRouter(route_class=UnitOfWorkRoute, tags=["contacts"])
router.include_router(import_router)
router.include_router(lists_router)
router.include_router(gdpr_router)
