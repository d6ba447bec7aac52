"""HTTP API of the tiering service."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
