"""WebRTC signalling: JSON offer/answer, WHEP (viewers) and WHIP (audio publishers).

Every answer is sent only after ICE gathering completed (all candidates in the SDP): OBS and
other WHIP/WHEP clients do not trickle. An audio track offered by the client (a microphone, a
WHIP publisher) drives the avatar as live input.

Limits, the same on all three paths: an offer of at most MAX_SDP_BYTES and MAX_SDP_MEDIA media sections,
at most server.max_peers_per_session peers per session, and a peer that has not connected within
server.offer_timeout_s of its answer is closed (each holds sockets and a DTLS transport).
A peer can be deleted by the credential that created it, or by the API token.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

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
from facecast_client.ice import restrict_host_candidates, rtc_configuration

from facecast.outputs.webrtc import WebRtcOutput
from facecast.server.auth import presented_token, same_token, token_fingerprint
from facecast.server.errors import ApiError, not_found, read_json
from facecast.server.ice import host_candidate_addresses
from facecast.server.registry import LiveSession, Peer, Registry
from facecast.server.schemas import MAX_SDP_BYTES
from facecast.server.state import REGISTRY
from facecast.stream.audio_input import FrameInput

log = logging.getLogger(__name__)

SDP_TYPE = "application/sdp"
MAX_SDP_MEDIA = 8  # m-lines: a browser viewer offers 2 (video, audio), a WHIP publisher 1


def check_sdp(sdp: str) -> None:
    """Refuse an offer too large to be a client's, before aiortc parses it (every path calls this)."""
    if len(sdp) > MAX_SDP_BYTES or len(sdp.encode()) > MAX_SDP_BYTES:
        raise _sdp_too_large()
    media = sum(line.startswith("m=") for line in sdp.splitlines())
    if media > MAX_SDP_MEDIA:
        raise ApiError(
            400, "bad_sdp", f"the SDP offer has {media} media sections; at most {MAX_SDP_MEDIA} are accepted"
        )
    if not media or not sdp.lstrip().startswith("v=0"):
        raise ApiError(
            400,
            "bad_sdp",
            "the offer is not an SDP session description (it must start with 'v=0' and have media)",
        )


def _sdp_too_large() -> ApiError:
    return ApiError(413, "payload_too_large", f"an SDP offer may have at most {MAX_SDP_BYTES} bytes")


def check_peer_room(registry: Registry, live: LiveSession) -> None:
    """429 when the session has its maximum of peers (pending offers included)."""
    server = registry.settings.server
    if len(live.peers) >= server.max_peers_per_session:
        # Unconnected offers are gone after offer_timeout_s: the earliest a retry can find room.
        retry = str(max(1, math.ceil(server.offer_timeout_s)))
        raise ApiError(
            429,
            "too_many_peers",
            f"this session has its maximum of {server.max_peers_per_session} peers",
            {"Retry-After": retry},
        )


async def negotiate(
    registry: Registry, live: LiveSession, offer_sdp: str, kind: str, owner: str | None = None
) -> Peer:
    """Answer `offer_sdp` for a new peer of `live`; viewers get the session's video and audio.

    `owner` is the fingerprint of the credential that asked (auth.token_fingerprint): only it, or the
    API token, may delete the peer. The peer counts toward the session's cap from the start, so that
    concurrent offers cannot overshoot it while they gather candidates; a failed offer is closed."""
    check_sdp(offer_sdp)
    check_peer_room(registry, live)
    server = registry.settings.server
    pc = RTCPeerConnection(rtc_configuration(server.ice_servers))
    peer = Peer(pc=pc, kind=kind, owner=owner)
    live.peers[peer.id] = peer
    try:
        await _answer(registry, live, peer, offer_sdp)
    except BaseException:  # ApiError, or cancelled (the client went away): nothing of the peer is left
        await registry.close_peer(live, peer)
        raise
    peer.offer_timer = asyncio.ensure_future(
        close_unless_connected(registry, live, peer, server.offer_timeout_s)
    )
    return peer


async def close_unless_connected(registry: Registry, live: LiveSession, peer: Peer, timeout_s: float) -> None:
    """Close `peer` if it is not connected `timeout_s` after its answer (a client that left, or never
    applied the answer): otherwise it holds its sockets and transport until ICE gives up, minutes later."""
    await asyncio.sleep(timeout_s)
    if peer.id in live.peers and peer.pc.connectionState != "connected":
        log.info(
            "closing peer %s of session %s: not connected %.1f s after its answer",
            peer.id,
            live.id,
            timeout_s,
        )
        await registry.close_peer(live, peer)


async def _answer(registry: Registry, live: LiveSession, peer: Peer, offer_sdp: str) -> None:
    """Apply the offer to peer.pc and set its answer (all candidates gathered); ApiError if unusable."""
    server = registry.settings.server
    pc, kind = peer.pc, peer.kind

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        # A WHEP viewer only watches (its view token must not drive the avatar): its audio is ignored.
        if track.kind == "audio" and peer.ingest is None and kind != "whep":
            peer.ingest = asyncio.ensure_future(_ingest(live, track))

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState == "connected" and peer.offer_timer is not None:
            peer.offer_timer.cancel()  # it connected in time: a later ICE hiccup is not an abandoned offer
            peer.offer_timer = None  # (and no cycle through the task: see Registry.close_peer)
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
        raise ApiError(
            400, "bad_sdp", f"the SDP offer could not be used: {exc or type(exc).__name__}"
        ) from None
    kinds = {t.kind for t in pc.getTransceivers()}
    video_sender: RTCRtpSender | None = None
    if kind != "whip":
        if not kinds & {"video", "audio"}:
            raise ApiError(400, "bad_sdp", "the offer has no audio or video section to receive the avatar")
        peer.output = WebRtcOutput(video="video" in kinds, audio="audio" in kinds)
        live.runtime.add_output(peer.output)
        if peer.output.video is not None:
            video_sender = pc.addTrack(peer.output.video)
        if peer.output.audio is not None:
            pc.addTrack(peer.output.audio)
    elif "audio" not in kinds:
        raise ApiError(400, "bad_sdp", "a WHIP offer must send an audio track")
    restrict_host_candidates(pc, host_candidate_addresses(server.ice_host_addresses, server.host))
    try:
        await pc.setLocalDescription(await pc.createAnswer())  # gathers every candidate first
    except Exception as exc:
        raise ApiError(400, "bad_sdp", f"no answer is possible for this offer: {exc}") from None
    if peer.output is not None and peer.output.video is not None:
        codec = _answered_codec(pc.localDescription.sdp, "video")
        if codec is not None:
            peer.output.video.use_codec(codec, video_sender)
    if peer.output is not None and peer.output.audio is not None:
        codec = _answered_codec(pc.localDescription.sdp, "audio")
        if codec is not None:
            peer.output.audio.use_codec(codec)


def _offered_kinds(sdp: str) -> set[str]:
    try:
        return {m.kind for m in SessionDescription.parse(sdp).media}
    except Exception:  # malformed: setRemoteDescription reports it
        return set()


def _video_preferences() -> list[RTCRtpCodecCapability]:
    codecs = RTCRtpSender.getCapabilities("video").codecs
    rank = {"video/H264": 0, "video/VP8": 1}
    return sorted(codecs, key=lambda c: rank.get(c.mimeType, 2))  # rtx kept: retransmissions


def _answered_codec(sdp: str, kind: str) -> str | None:
    """The codec the answer's `kind` section sends with (aiortc uses the first one listed)."""
    for media in SessionDescription.parse(sdp).media:
        if media.kind == kind and media.rtp.codecs:
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
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        raise _sdp_too_large()  # refused unread
    body = await request.read()
    if len(body) > MAX_SDP_BYTES:
        raise _sdp_too_large()
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
    peer = await negotiate(registry, live, body["sdp"], "webrtc", _owner(request))
    return web.json_response({"sdp": peer.pc.localDescription.sdp, "type": "answer", "peer": peer.id})


async def _whxp_post(request: web.Request, kind: str) -> web.Response:
    registry = request.app[REGISTRY]
    live = registry.get(request.match_info["sid"])
    peer = await negotiate(registry, live, await _read_sdp(request), kind, _owner(request))
    location = f"/v1/sessions/{live.id}/{kind}/{peer.id}"
    response = web.Response(
        status=201, text=peer.pc.localDescription.sdp, content_type=SDP_TYPE, headers={"Location": location}
    )
    for link in ice_server_links(registry.settings.server.ice_servers):
        response.headers.add("Link", link)  # WHIP/WHEP clients (OBS) take STUN/TURN servers from these
    return response


def client_ice_servers(ice_servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The configured STUN/TURN servers as browsers' RTCIceServer dicts: urls (a list), and the
    username and credential where set (TURN)."""
    out = []
    for server in ice_servers:
        urls = server["urls"]
        entry: dict[str, Any] = {"urls": [urls] if isinstance(urls, str) else list(urls)}
        for key in ("username", "credential"):
            if server.get(key) is not None:
                entry[key] = server[key]
        out.append(entry)
    return out


def ice_server_links(ice_servers: list[dict[str, Any]]) -> list[str]:
    """`Link: <url>; rel="ice-server"` values (RFC 9725 section 4.6), one per server URL."""

    def quoted(value: object) -> str:
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    links = []
    for server in client_ice_servers(ice_servers):
        params = ""
        if "username" in server:
            params += f"; username={quoted(server['username'])}"
        if "credential" in server:
            params += f'; credential={quoted(server["credential"])}; credential-type="password"'
        links += [f'<{url}>; rel="ice-server"{params}' for url in server["urls"]]
    return links


async def get_ice_servers(request: web.Request) -> web.Response:
    """GET /v1/sessions/{sid}/ice_servers -> {"ice_servers": [...]}: for pages that watch with a view token."""
    registry = request.app[REGISTRY]
    registry.get(request.match_info["sid"])
    return web.json_response({"ice_servers": client_ice_servers(registry.settings.server.ice_servers)})


async def post_whep(request: web.Request) -> web.Response:
    return await _whxp_post(request, "whep")


async def post_whip(request: web.Request) -> web.Response:
    return await _whxp_post(request, "whip")


def _owner(request: web.Request) -> str | None:
    """What the new peer keeps of the credential that asked for it (the auth middleware checked it)."""
    return token_fingerprint(presented_token(request))


def _may_delete(request: web.Request, peer: Peer) -> bool:
    """The API token (admin), or the very credential that created the peer; anyone on a server
    without an API token (loopback only, no credentials at all)."""
    api_token = request.app[REGISTRY].settings.server.api_token
    token = presented_token(request)
    if api_token is None or same_token(token, api_token):
        return True
    return same_token(token_fingerprint(token), peer.owner)


async def delete_peer(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    live = registry.get(request.match_info["sid"])
    peer = live.peers.get(request.match_info["pid"])
    # Only a peer of this resource's kind: a WHEP viewer's URL (and its view token) cannot end others.
    # Another credential's peer is "not found" too: a token must not learn which peer ids exist.
    kind = (request.match_info.route.name or "").removesuffix("_resource").removesuffix("_peer")
    if peer is None or peer.kind != kind or not _may_delete(request, peer):
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
    app.router.add_get("/v1/sessions/{sid}/ice_servers", get_ice_servers, name="ice_servers")
    for kind, handler in (("whep", post_whep), ("whip", post_whip)):
        app.router.add_post(f"/v1/sessions/{{sid}}/{kind}", handler, name=kind)
        resource = app.router.add_resource(f"/v1/sessions/{{sid}}/{kind}/{{pid}}", name=f"{kind}_resource")
        resource.add_route("DELETE", delete_peer)
        resource.add_route("PATCH", patch_peer)
