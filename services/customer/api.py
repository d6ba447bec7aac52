"""HTTP API of the customer service."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
