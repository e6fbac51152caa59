"""`GET /api/streams` and `GET /api/stats`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from vergence.auth import may_command, principal_of
from vergence.context import Server

router = APIRouter()


class StreamInfo(BaseModel):
    """A stream as listed by GET /api/streams."""

    id: str
    width: int
    height: int
    fps: float
    codec: str | None
    bitrate_bps: int
    source: str
    state: str
    sensor_mode: dict[str, Any] | None = Field(
        None, description="picamera2: the sensor mode streamed from (size, crop of the pixel array, field_of_view)"
    )


@router.get("/api/streams", response_model=list[StreamInfo], tags=["streams"])
async def list_streams(server: Server) -> list[dict[str, Any]]:
    """List the streams with size, frame rate and H.264 codec string."""
    return [stream.describe() for stream in server.streams.values()]


@router.get("/api/stats", tags=["streams"])
async def stats(request: Request, server: Server) -> dict[str, Any]:
    """Frame rates, bitrates, viewers, drops, per-stage timings, and the latency players reported (WebRTC peers one by
    one for operators only)."""
    return server.stats(operator=may_command(principal_of(request.scope)))
