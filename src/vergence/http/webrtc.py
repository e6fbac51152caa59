"""WHEP-style signalling: `POST /api/webrtc/{stream}` (SDP offer → answer), `DELETE …/{peer}` to hang up, `PATCH` (trickle
ICE) answered 405. Pages of `[auth] allowed_origins` may use it across origins (http/cors.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from vergence.auth import client_address_of, may_command, principal_of
from vergence.context import server_context
from vergence.media import json_text

router = APIRouter()
MAX_OFFER_BYTES = 64 * 1024
SDP = "application/sdp"


# The route reads its body itself: OpenAPI learns the forms of the offer and the answer from these.
_OFFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            SDP: {"schema": {"type": "string", "description": "the SDP offer"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"type": {"const": "offer"}, "sdp": {"type": "string"}},
                    "required": ["sdp"],
                }
            },
        },
    }
}
_ANSWER: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "the answer, in the form of the offer",
        "content": {
            SDP: {"schema": {"type": "string"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "type": {"const": "answer"},
                        "sdp": {"type": "string"},
                        "id": {"type": "string"},
                        "location": {"type": "string"},
                    },
                }
            },
        },
    }
}


def _peers(request: Request) -> Any:
    peers = server_context(request).webrtc
    if peers is None:
        raise HTTPException(404, "WebRTC is disabled ([webrtc] enabled = false)")
    return peers


@router.post(
    "/api/webrtc/{stream_id}",
    tags=["video"],
    status_code=201,
    response_class=Response,
    responses=_ANSWER,
    openapi_extra=_OFFER_BODY,
)
async def offer(request: Request, stream_id: str) -> Response:
    """Answer an SDP offer (`application/sdp`, or JSON `{"type": "offer", "sdp": …}`) with a peer sending the stream.

    201 with the answer (same form as the offer) and `Location` of the peer, which DELETE hangs up: a URL only the
    offerer learns. The answer holds all our ICE candidates (no trickle). 400 for an offer that cannot be used, 404
    unknown stream, 415 no H.264, 429 this client holds `max_peers_per_client` already, 503 full.
    """
    from vergence.outputs.webrtc import WebRtcError

    peers = _peers(request)
    stream = server_context(request).streams.find(stream_id)
    body = await request.body()
    if len(body) > MAX_OFFER_BYTES:
        raise HTTPException(413, f"an SDP offer is at most {MAX_OFFER_BYTES // 1024} KiB")
    as_json = "json" in request.headers.get("content-type", "")
    sdp = _offer_text(body, as_json)
    port = request.client.port if request.client else 0
    try:
        peer = await peers.answer(stream, sdp, client_address_of(request.scope), port, principal_of(request.scope))
    except WebRtcError as err:
        raise HTTPException(err.status, str(err)) from None
    location = f"/api/webrtc/{stream_id}/{peer.resource}"
    answer = peer.pc.localDescription.sdp
    headers = {"Location": location, "Cache-Control": "no-store"}
    if as_json:
        return JSONResponse({"type": "answer", "sdp": answer, "id": peer.id, "location": location}, 201, headers)
    return Response(answer, 201, headers, media_type=SDP)


def _offer_text(body: bytes, as_json: bool) -> str:
    try:
        if not as_json:
            return body.decode("utf-8")
        message = json_text.loads(body)
    except ValueError as err:
        raise HTTPException(400, f"the offer is not {'JSON' if as_json else 'UTF-8 SDP text'}: {err}") from None
    if (
        not isinstance(message, dict)
        or message.get("type", "offer") != "offer"
        or not isinstance(message.get("sdp"), str)
    ):
        raise HTTPException(400, 'expected {"type": "offer", "sdp": "v=0…"}')
    return message["sdp"]


@router.delete("/api/webrtc/{stream_id}/{peer}", tags=["video"])
async def hang_up(request: Request, stream_id: str, peer: str) -> dict[str, Any]:
    """Close one peer (what a WHEP client does when it stops): at its `Location`, which only whoever made the offer
    knows, or, for an operator, by the id `GET /api/webrtc` lists."""
    peers = _peers(request)
    found = peers.by_resource(peer)
    if found is None and may_command(principal_of(request.scope)):
        found = peers.peers.get(peer)
    if found is None:
        # Ended already (a WHEP client may close its peer before it sends DELETE): the session is gone, as asked.
        ended = peers.ended(peer)
        if ended is not None and ended[0] == stream_id:
            return {"ok": True, "id": ended[1], "ended": True}
    if found is None or found.stream_id != stream_id:
        raise HTTPException(404, f"no such WebRTC peer on stream {stream_id!r}")  # the path is a secret: not echoed
    await peers.hang_up(found.id)
    return {"ok": True, "id": found.id}


@router.patch("/api/webrtc/{stream_id}/{peer}", tags=["video"], status_code=405, response_class=Response)
async def trickle(stream_id: str, peer: str) -> Response:
    """Trickle ICE and ICE restarts (WHEP's PATCH) are not supported: 405, without `Accept-Patch`, as the WHEP and
    WHIP specifications allow. The answer to the offer holds every candidate of ours; a client's candidates reach us
    inside its offer or by the peer connection's own checks."""
    return Response(status_code=405, headers={"Allow": "DELETE"})


@router.get("/api/webrtc", tags=["video"])
async def list_peers(request: Request) -> dict[str, Any]:
    """Counts of WebRTC peers; for an operator also each peer with its client, state, frames sent and drops."""
    return _peers(request).describe(peers=may_command(principal_of(request.scope)))
