"""HTTP API of the complaints service."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
