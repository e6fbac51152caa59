"""HTTP routes of the recordings and photos in the media directory: list, download, delete."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["recordings"])
