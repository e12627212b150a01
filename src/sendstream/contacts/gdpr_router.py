"""Placeholder: filled in by the owner of this use case."""

from __future__ import annotations

from fastapi import APIRouter

from sendstream.core.http import UnitOfWorkRoute

router = APIRouter(route_class=UnitOfWorkRoute, tags=["contacts"])
