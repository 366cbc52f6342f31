"""WebRTC signalling: JSON offer/answer, WHEP (viewers) and WHIP (audio publishers).

Every answer is sent only after ICE gathering completed (all candidates in the SDP): OBS and
other WHIP/WHEP clients do not trickle. An audio track offered by the client (a microphone, a
WHIP publisher) drives the avatar as live input.
"""

from __future__ import annotations

import asyncio
import logging

import av
from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

from facecast.outputs.webrtc import WebRtcOutput
from facecast.server.errors import ApiError, not_found, read_json
from facecast.server.ice import restrict_host_candidates, rtc_configuration
from facecast.server.registry import LiveSession, Peer, Registry
from facecast.server.state import REGISTRY
from facecast.stream.audio_input import FrameInput

log = logging.getLogger(__name__)

SDP_TYPE = "application/sdp"
MAX_SDP_BYTES = 64 * 1024


async def negotiate(registry: Registry, live: LiveSession, offer_sdp: str, kind: str) -> Peer:
    """Answer `offer_sdp` for a new peer of `live`; viewers get the session's video and audio."""
    if "m=" not in offer_sdp or not offer_sdp.lstrip().startswith("v=0"):
        raise ApiError(
            400,
            "bad_sdp",
            "the offer is not an SDP session description (it must start with 'v=0' and have media)",
        )
    server = registry.settings.server
    pc = RTCPeerConnection(rtc_configuration(server.ice_servers))
    peer = Peer(pc=pc, kind=kind)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio" and peer.ingest is None:
            peer.ingest = asyncio.ensure_future(_ingest(live, track))

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed") and peer.id in live.peers:
            await registry.close_peer(live, peer)

    if kind != "whip" and "video" in _offered_kinds(offer_sdp):
        # An answerer's codec order otherwise follows the offer (browsers list VP8 first); a video
        # transceiver made before the offer is applied carries our order: H.264 first (the session
        # encodes it once for all its viewers at a fraction of VP8's cost), VP8 as the fallback.
        pc.addTransceiver("video", direction="sendonly").setCodecPreferences(_video_preferences())
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    except Exception as exc:  # aiortc raises ValueError, KeyError, ... on malformed SDP
        await pc.close()
        raise ApiError(
            400, "bad_sdp", f"the SDP offer could not be used: {exc or type(exc).__name__}"
        ) from None
    kinds = {t.kind for t in pc.getTransceivers()}
    video_sender: RTCRtpSender | None = None
    if kind != "whip":
        if not kinds & {"video", "audio"}:
            await pc.close()
            raise ApiError(400, "bad_sdp", "the offer has no audio or video section to receive the avatar")
        peer.output = WebRtcOutput(video="video" in kinds, audio="audio" in kinds)
        live.runtime.add_output(peer.output)
        if peer.output.video is not None:
            video_sender = pc.addTrack(peer.output.video)
        if peer.output.audio is not None:
            pc.addTrack(peer.output.audio)
    elif "audio" not in kinds:
        await pc.close()
        raise ApiError(400, "bad_sdp", "a WHIP offer must send an audio track")
    restrict_host_candidates(pc, server.ice_host_addresses)
    try:
        await pc.setLocalDescription(await pc.createAnswer())  # gathers every candidate first
    except Exception as exc:
        await registry.close_peer(live, peer)
        raise ApiError(400, "bad_sdp", f"no answer is possible for this offer: {exc}") from None
    if peer.output is not None and peer.output.video is not None:
        codec = _answered_video_codec(pc.localDescription.sdp)
        if codec is not None:
            peer.output.video.use_codec(codec, video_sender)
    live.peers[peer.id] = peer
    return peer


def _offered_kinds(sdp: str) -> set[str]:
    try:
        return {m.kind for m in SessionDescription.parse(sdp).media}
    except Exception:  # malformed: setRemoteDescription reports it
        return set()


def _video_preferences() -> list[RTCRtpCodecCapability]:
    codecs = RTCRtpSender.getCapabilities("video").codecs
    rank = {"video/H264": 0, "video/VP8": 1}
    return sorted(codecs, key=lambda c: rank.get(c.mimeType, 2))  # rtx kept: retransmissions


def _answered_video_codec(sdp: str) -> str | None:
    """The codec the answer's video section sends with (aiortc uses the first one listed)."""
    for media in SessionDescription.parse(sdp).media:
        if media.kind == "video" and media.rtp.codecs:
            return media.rtp.codecs[0].mimeType.split("/", 1)[1].upper()
    return None


async def _ingest(live: LiveSession, track: MediaStreamTrack) -> None:
    audio_in = FrameInput()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if isinstance(frame, av.AudioFrame):
            live.runtime.push_live(audio_in.push(frame))


async def _read_sdp(request: web.Request) -> str:
    if request.content_type != SDP_TYPE:
        raise ApiError(
            415, "unsupported_media_type", f"send the SDP offer as {SDP_TYPE}, not '{request.content_type}'"
        )
    body = await request.read()
    if len(body) > MAX_SDP_BYTES:
        raise ApiError(413, "payload_too_large", "SDP offer too large")
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise ApiError(400, "bad_sdp", "the SDP offer is not UTF-8 text") from None


async def post_offer(request: web.Request) -> web.Response:
    """POST /v1/sessions/{sid}/webrtc  {"sdp", "type": "offer"} -> {"sdp", "type": "answer", "peer"}."""
    registry = request.app[REGISTRY]
    live = registry.get(request.match_info["sid"])
    body = await read_json(request)
    if body.get("type") != "offer" or not isinstance(body.get("sdp"), str):
        raise ApiError(400, "bad_offer", 'expected {"sdp": "...", "type": "offer"}')
    peer = await negotiate(registry, live, body["sdp"], "webrtc")
    return web.json_response({"sdp": peer.pc.localDescription.sdp, "type": "answer", "peer": peer.id})


async def _whxp_post(request: web.Request, kind: str) -> web.Response:
    registry = request.app[REGISTRY]
    live = registry.get(request.match_info["sid"])
    peer = await negotiate(registry, live, await _read_sdp(request), kind)
    location = f"/v1/sessions/{live.id}/{kind}/{peer.id}"
    return web.Response(
        status=201, text=peer.pc.localDescription.sdp, content_type=SDP_TYPE, headers={"Location": location}
    )


async def post_whep(request: web.Request) -> web.Response:
    return await _whxp_post(request, "whep")


async def post_whip(request: web.Request) -> web.Response:
    return await _whxp_post(request, "whip")


async def delete_peer(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    live = registry.get(request.match_info["sid"])
    peer = live.peers.get(request.match_info["pid"])
    if peer is None:
        raise not_found("peer", request.match_info["pid"])
    await registry.close_peer(live, peer)
    return web.Response(status=200)


async def patch_peer(request: web.Request) -> web.Response:
    raise ApiError(
        405,
        "trickle_not_supported",
        "trickle ICE is not supported: all candidates are in the answer",
        {"Allow": "DELETE"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/sessions/{sid}/webrtc", post_offer, name="webrtc")
    app.router.add_delete("/v1/sessions/{sid}/webrtc/{pid}", delete_peer, name="webrtc_peer")
    for kind, handler in (("whep", post_whep), ("whip", post_whip)):
        app.router.add_post(f"/v1/sessions/{{sid}}/{kind}", handler, name=kind)
        resource = app.router.add_resource(f"/v1/sessions/{{sid}}/{kind}/{{pid}}", name=f"{kind}_resource")
        resource.add_route("DELETE", delete_peer)
        resource.add_route("PATCH", patch_peer)
