"""Photos: a still of a stream saved as a JPEG in the media directory."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vergence.errors import CommandError

if TYPE_CHECKING:
    from vergence.app import Vergence
    from vergence.stream import Stream


async def take_photo(vergence: Vergence, stream: Stream, name: str | None) -> dict[str, Any]:
    """Save the newest frame of `stream` as `<media dir>/<name>.jpg`; CommandError when it exists or cannot be written."""
    packet = await stream.snapshot()
    if packet is None:
        raise CommandError(f"{stream.id} has no frame yet", code="unavailable")
    path = vergence.settings.media.dir.expanduser() / f"{name or photo_name(stream.id, datetime.now())}.jpg"
    try:
        await asyncio.to_thread(_write_new, path, packet.data)
    except FileExistsError:
        raise CommandError(f"{path} already exists") from None
    except OSError as err:
        raise CommandError(f"cannot write {path}: {err}", code="io_error") from None
    return {"stream": stream.id, "path": str(path), "bytes": len(packet.data), "capture_ns": packet.capture_ns}


def photo_name(stream: str, when: datetime) -> str:
    """Default name of a photo: stream id and local time to the millisecond."""
    return f"{stream}-{when.strftime('%Y%m%d-%H%M%S')}-{when.microsecond // 1000:03d}"


def _write_new(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as file:
        file.write(data)
