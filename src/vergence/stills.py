"""Photos: a still of a stream saved as a JPEG with EXIF (time, camera, GPS position) in the media directory.

Where the source can (picamera2), the photo has the sensor's full resolution for the current crop; otherwise it is the
stream's newest frame. The JPEG is encoded on a worker thread after the camera is back in video mode, so a 12 MP
encode never holds up the live picture.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import simplejpeg

from vergence.errors import CommandError, SourceError
from vergence.media.exif import Attitude, Position, StillTags, exif_segment, with_exif, xmp_segment
from vergence.media.frame import full_range_planes, i420_planes
from vergence.media.names import MediaNameError, media_file_name
from vergence.sources.base import Still

if TYPE_CHECKING:
    from vergence.config import Settings
    from vergence.stream import Stream

log = logging.getLogger(__name__)

# A photo is kept and looked at full size, and encoded once rather than 30 times a second: 92 keeps fine detail that the
# streaming quality (jpeg.quality, 80 by default) gives away, at about half the bytes of 100. A higher setting wins.
STILL_QUALITY = 92


async def take_photo(
    stream: Stream,
    name: str | None,
    settings: Settings,
    position: Position | None,
    attitude: Attitude | None = None,
    path: str | None = None,
) -> dict[str, Any]:
    """Save a still of `stream` as `<media dir>/<name>.jpg`, or at `path` inside one of [media] photo_dirs; CommandError
    when the file exists, the path is not allowed, or it cannot be written."""
    target = None if path is None else allowed_photo_path(path, settings.media.photo_dirs)
    try:
        still = await stream.still()
    except SourceError as err:
        raise CommandError(f"{stream.id}: {err}", code="unavailable") from None
    quality = max(STILL_QUALITY, settings.jpeg.quality)
    if still is not None:
        jpeg = await asyncio.to_thread(encode_still, still, quality)
        width, height, capture_ns = still.width, still.height, still.capture_ns
    else:
        packet = await stream.snapshot()
        if packet is None:
            raise CommandError(f"{stream.id} has no frame yet", code="unavailable")
        jpeg, capture_ns = packet.data, packet.capture_ns
        width, height = packet.width or stream.info.width, packet.height or stream.info.height
    make, model = stream.camera_names()
    taken = datetime.fromtimestamp(capture_ns / 1e9).astimezone()
    tags = StillTags(make, model, taken, width, height, position, attitude)
    data = with_exif(jpeg, exif_segment(tags) + xmp_segment(attitude))
    if target is None:
        try:
            file_name = media_file_name(name or photo_name(stream.id, taken), ".jpg")
        except MediaNameError as err:  # a stream id vergence cannot name a file by (the command checked `name` already)
            raise CommandError(str(err), code="invalid") from None
        target = settings.media.dir.expanduser() / file_name
    try:
        await asyncio.to_thread(_write_new, target, data)
    except FileExistsError:
        raise CommandError(f"{target} already exists") from None
    except OSError as err:
        raise CommandError(f"cannot write {target}: {err}", code="io_error") from None
    return {
        "stream": stream.id,
        "path": str(target),
        "bytes": len(data),
        "capture_ns": capture_ns,
        "width": width,
        "height": height,
        "full_resolution": still is not None and still.full_resolution,
        "reconfigured": still is not None and still.reconfigured,
        "stall_ms": None if still is None else round(still.stall_ms, 1),
        "exif": tags.summary(),
    }


def allowed_photo_path(path: str, photo_dirs: Sequence[Path]) -> Path:
    """The file a photo given by path goes to: an absolute `.jpg` path whose directory (symbolic links followed) exists
    inside one of `photo_dirs`; CommandError (forbidden, invalid) otherwise."""
    wanted = Path(path)
    if not wanted.is_absolute() or wanted.suffix.lower() not in (".jpg", ".jpeg") or wanted.name.startswith("."):
        raise CommandError(f"photo path {path!r}: an absolute path of a .jpg file", code="invalid")
    try:
        folder = wanted.parent.resolve(strict=True)
    except OSError:
        raise CommandError(f"photo path {path!r}: no directory {str(wanted.parent)!r}", code="invalid") from None
    for allowed in photo_dirs:
        root = allowed.expanduser().resolve()
        if folder == root or root in folder.parents:
            return folder / wanted.name
    where = ", ".join(str(allowed) for allowed in photo_dirs) or "none are set"
    raise CommandError(f"photo path {path!r} is outside [media] photo_dirs ({where})", code="forbidden")


def encode_still(still: Still, quality: int) -> bytes:
    """Return the JPEG of a still (I420 planes straight into libjpeg-turbo, accurate DCT: it is encoded once)."""
    started = time.perf_counter()
    y, u, v = i420_planes(still.image, still.width, still.height)
    if still.limited_range:
        y, u, v = full_range_planes(y, u, v)
    data = simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=quality, fastdct=False)
    log.debug("still %dx%d encoded in %.0f ms", still.width, still.height, (time.perf_counter() - started) * 1000)
    return data


def photo_name(stream: str, when: datetime) -> str:
    """Default name of a photo: stream id and local time to the millisecond."""
    return f"{stream}-{when.strftime('%Y%m%d-%H%M%S')}-{when.microsecond // 1000:03d}"


def _write_new(path: Path, data: bytes) -> None:
    """Write `data` to a new file at `path`, whole or not at all; FileExistsError when `path` exists.

    Written and synced under a temporary name in the same directory, then linked to `path` (a link never replaces a
    file), so no reader sees half a photo and a crash leaves no truncated one under the real name. Where the file system
    has no hard links (FAT on a USB stick), the file is created in place, still never overwriting.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{time.monotonic_ns()}.part")
    try:
        with temporary.open("xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            path.hardlink_to(temporary)
        except FileExistsError:
            raise
        except OSError:
            with path.open("xb") as file:
                file.write(data)
    finally:
        temporary.unlink(missing_ok=True)
