"""HTTP API of the notifications service."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
