"""HTTP routes of the recordings and photos in the media directory: list, download, delete."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from vergence.context import ServerContext, server_context
from vergence.media.names import MediaNameError
from vergence.recording.library import MEDIA_TYPES, MediaLibrary, media_path, media_type

router = APIRouter(tags=["recordings"])

CHUNK_BYTES = 64 * 1024


def _vergence(request: Request) -> ServerContext:
    return server_context(request)


def _library(request: Request) -> MediaLibrary:
    """The app's one library, so its cache of what each video holds outlives a request."""
    state = request.app.state
    library: MediaLibrary | None = getattr(state, "media_library", None)
    if library is None:
        library = state.media_library = MediaLibrary()
    return library


def _directory(request: Request) -> Path:
    return Path(_vergence(request).recordings.directory)


def _open_paths(request: Request) -> set[Path]:
    return {path.resolve() for path in _vergence(request).recordings.open_paths()}


def _path(request: Request, name: str) -> Path:
    """The file `name` of the media directory: 400 for a name that is not a media file name, 404 if missing."""
    try:
        path = media_path(_directory(request), name)
    except MediaNameError as err:
        raise HTTPException(400, str(err)) from None
    if not path.is_file():
        raise HTTPException(404, f"no recording or photo named {name!r}")
    return path


@router.get("/api/recordings")
async def list_recordings(request: Request) -> dict[str, Any]:
    """The media directory's recordings, clips and photos, newest first, and its disk's free space."""
    vergence = _vergence(request)
    directory = _directory(request)
    listing = await asyncio.to_thread(
        _library(request).describe, directory, vergence.recordings.open_paths(), list(vergence.streams)
    )
    for file in listing["files"]:
        file["url"] = f"/api/recordings/{file['name']}"
    return listing


@router.get(
    "/api/recordings/{name}",
    response_class=FileResponse,
    responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()}, "description": "the file"}},
)
async def download_recording(request: Request, name: str) -> Response:
    """Download one file (Range requests work); a segment being written comes as far as it is written now."""
    path = _path(request, name)
    headers = {"Cache-Control": "no-cache"}
    if path in _open_paths(request):
        # The file grows while it is sent: send the bytes it holds now, with their length, and nothing after.
        size = (await asyncio.to_thread(os.stat, path)).st_size
        headers["Content-Length"] = str(size)
        headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
        return StreamingResponse(_read(path, size), media_type=media_type(name), headers=headers)
    return FileResponse(path, media_type=media_type(name), filename=path.name, headers=headers)


async def _read(path: Path, size: int) -> AsyncIterator[bytes]:
    file = await asyncio.to_thread(path.open, "rb")
    try:
        left = size
        while left > 0:
            chunk = await asyncio.to_thread(file.read, min(CHUNK_BYTES, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        file.close()


@router.delete("/api/recordings/{name}", status_code=204)
async def delete_recording(request: Request, name: str) -> Response:
    """Delete one file; 409 while it is being recorded."""
    path = _path(request, name)
    if path in _open_paths(request):
        raise HTTPException(409, f"{name} is being recorded; stop the recording first")
    try:
        await asyncio.to_thread(path.unlink)
    except FileNotFoundError:
        raise HTTPException(404, f"no recording or photo named {name!r}") from None
    except OSError as err:
        raise HTTPException(500, f"cannot delete {name}: {err.strerror}") from None
    return Response(status_code=204)
