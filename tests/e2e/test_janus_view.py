"""The view page playing a session's broadcast from Janus, in headless Chromium (view.js, watchJanus).

A real Janus (Debian's janus 1.1, loopback only: facecast.bench.janus_server) and a `facecast serve`
configured with it (server.janus_url, 256x256 at 30 fps). A session starts a broadcast
(POST /v1/sessions/{id}/broadcast) and the page opens the answer's `watch.view` link, which carries
?janus=URL&mountpoint=ID: view.js talks to Janus's HTTP API itself (create, attach the Streaming plugin,
watch, answer with start) and plays what Janus relays. While the session speaks (a speech file played
through the API) the page must:

- present >= 25 new video frames a second (requestVideoFrameCallback's presentedFrames; Janus relays the
  session's 30), decoded from H.264 (the mountpoint's codec);
- show a picture, not black: the frame drawn to a canvas is bright on average and the face region in
  its middle is not uniform;
- report no errors (window.facecastView.errors);
- get its media from Janus, not from the facecast server: the peer connection's selected remote ICE
  candidate is one of the UDP ports Janus has open (Janus and facecast both sit on 127.0.0.1, so the port
  is what tells them apart), and the facecast server has no peer at all for the session (a page that
  fell back to WHEP would show up there as a viewer).

Chromium offers Janus only mDNS (.local) host candidates here (the page asks for no media permission),
which this Janus ignores ("Failed to add some remote candidates" in its log): Janus learns the page's
address from its connectivity checks instead (peer-reflexive), as it would behind a NAT.

The same for a broadcast to a VideoRoom ("to": "videoroom"): the link carries ?janus=URL&room=ID&feed=ID
and the page joins the room as a subscriber to the session's feed.

Runtime: about 9 s (12 s with pytest's start) on an idle machine, most of it starting the server, and
about 5 s more for the VideoRoom case.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import ServerProcess, chromium_page, chromium_path
from facecast_client import FacecastClient
from playwright.async_api import TimeoutError as PlaywrightTimeout

from facecast.bench.janus_server import JanusServer, janus_available
from facecast.bench.loopback import facecast_serve

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None, reason="chromium is not installed (apt-get install chromium)"
    ),
    pytest.mark.skipif(janus_available() is not None, reason=str(janus_available())),
]

SIZE = 256
SPEECH_FILE = "speech_2.wav"  # 7.0 s: outlasts the measurement below
MEASURE_S = 3.0
MIN_PRESENTED_FPS = 25.0
MIN_FRAMES_BEFORE_MEASURING = 10  # the first keyframe came through Janus and the picture is flowing
UI_TIMEOUT_MS = 20_000  # Janus offer, ICE on loopback, first keyframe (at most 2 s away)

# Video frames the browser presented over `seconds` (requestVideoFrameCallback on the page's <video>).
PRESENTED_FPS_JS = """async (seconds) => {
  const video = document.querySelector('#video');
  const samples = [];
  const onFrame = (now, meta) => { samples.push([now, meta.presentedFrames]); video.requestVideoFrameCallback(onFrame); };
  video.requestVideoFrameCallback(onFrame);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  if (samples.length < 2) return {fps: 0, callbacks: samples.length};
  const [t0, f0] = samples[0], [t1, f1] = samples[samples.length - 1];
  return {fps: (f1 - f0) * 1000 / (t1 - t0), callbacks: samples.length, presented: f1 - f0};
}"""

# The current video frame drawn to a canvas: mean luma of the whole frame, and the spread (std) of the
# luma in the middle half, where the face is.
FRAME_JS = """() => {
  const video = document.querySelector('#video');
  const w = video.videoWidth, h = video.videoHeight;
  const canvas = document.createElement('canvas');
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(video, 0, 0, w, h);
  const px = ctx.getImageData(0, 0, w, h).data;
  let sum = 0, n = 0, fs = 0, fs2 = 0, fn = 0;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = 4 * (y * w + x);
    const l = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
    sum += l; n++;
    if (x >= w / 4 && x < 3 * w / 4 && y >= h / 4 && y < 3 * h / 4) { fs += l; fs2 += l * l; fn++; }
  }
  const fm = fs / fn;
  return {width: w, height: h, mean: sum / n, faceMean: fm, faceStd: Math.sqrt(Math.max(0, fs2 / fn - fm * fm))};
}"""

# The peer connection as the browser sees it: the selected candidate pair's remote end, and the
# received video and audio.
PC_STATS_JS = """async () => {
  const v = window.facecastView;
  const pc = v.pc;
  const out = {state: v.state, errors: v.errors, remote: null, codec: null, framesDecoded: 0,
               audioPackets: 0, janusInSdp: false};
  if (!pc) return out;
  out.janusInSdp = !!(pc.remoteDescription && /janus/i.test(pc.remoteDescription.sdp));
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((r) => byId.set(r.id, r));
  let pair = null;
  report.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = byId.get(r.selectedCandidatePairId);
  });
  if (!pair) report.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
  if (pair) {
    const c = byId.get(pair.remoteCandidateId);
    if (c) out.remote = {address: c.address || c.ip, port: c.port, protocol: c.protocol, type: c.candidateType};
  }
  report.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') {
      out.framesDecoded = r.framesDecoded || 0;
      const codec = byId.get(r.codecId);
      out.codec = codec ? codec.mimeType : null;
    } else if (r.type === 'inbound-rtp' && r.kind === 'audio') {
      out.audioPackets = r.packetsReceived || 0;
    }
  });
  return out;
}"""


@pytest.fixture(scope="module")
def janus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JanusServer]:
    with JanusServer(tmp_path_factory.mktemp("janus")) as server:
        yield server
        print(f"--- janus log (tail) ---\n{server.log_tail()}")


@pytest.fixture(scope="module")
def janus_facecast(tmp_path_factory: pytest.TempPathFactory, janus: JanusServer) -> Iterator[ServerProcess]:
    """`facecast serve` (warp, 256x256, 30 fps) on loopback, broadcasting through `janus`."""
    workdir = tmp_path_factory.mktemp("facecast_janus")
    with facecast_serve(workdir, f"  janus_url: {janus.url}\n", size=SIZE) as srv:
        yield srv
        print(f"--- server log (tail) ---\n{srv.log_tail()}")


@pytest.fixture
async def api(janus_facecast: ServerProcess) -> AsyncIterator[FacecastClient]:
    client = FacecastClient(janus_facecast.base_url)  # the server runs without an API token
    yield client
    await client.close()


@pytest.mark.parametrize("to", ["streaming", "videoroom"])
async def test_view_page_plays_the_broadcast_from_janus(
    janus_facecast: ServerProcess,
    api: FacecastClient,
    janus: JanusServer,
    media_dir: Path,
    tmp_path: Path,
    to: str,
) -> None:
    sid = (await api.create_session())["id"]
    try:
        started: dict[str, Any] = await api.call(
            "POST", f"/v1/sessions/{sid}/broadcast", json={"action": "start", "to": to}
        )
        assert started["state"] == "live" and started["watch"]["janus"] == janus.url, started
        view_url = janus_facecast.base_url + started["watch"]["view"]
        async with chromium_page(tmp_path / "profile", auto_accept_media=False) as page:
            await page.set_viewport_size({"width": SIZE, "height": SIZE})
            await page.goto(view_url)
            try:
                await page.wait_for_function(
                    "(n) => { const v = window.facecastView; const video = document.querySelector('#video');"
                    " return v && v.state === 'connected' && video.videoWidth > 0"
                    " && video.getVideoPlaybackQuality().totalVideoFrames >= n; }",
                    arg=MIN_FRAMES_BEFORE_MEASURING,
                    timeout=UI_TIMEOUT_MS,
                )
            except PlaywrightTimeout:
                pc = await page.evaluate(PC_STATS_JS)
                pytest.fail(f"the page did not play the broadcast within {UI_TIMEOUT_MS} ms: {pc}")
            said = await api.play_file(sid, media_dir / SPEECH_FILE)
            speaking_since = time.monotonic()
            await asyncio.sleep(0.5)  # the speech is playing
            rates = await page.evaluate(PRESENTED_FPS_JS, MEASURE_S)
            frame = await page.evaluate(FRAME_JS)
            pc = await page.evaluate(PC_STATS_JS)
            spoke_for_s = time.monotonic() - speaking_since
            await page.screenshot(path=str(tmp_path / "janus_view.png"))  # for a look when it fails
            session = await api.get_session(sid)
            janus_udp_ports = {port for proto, _, port in janus.listening() if proto.startswith("udp")}
    finally:
        await api.delete_session(sid)

    print(
        f"janus view ({to}): presented {rates['fps']:.1f} fps ({rates.get('presented')} frames,"
        f" {rates['callbacks']} callbacks in {MEASURE_S:g} s); frame {frame['width']}x{frame['height']}"
        f" mean luma {frame['mean']:.1f}, face mean {frame['faceMean']:.1f} std {frame['faceStd']:.1f};"
        f" remote candidate {pc['remote']} (Janus UDP ports {sorted(janus_udp_ports)});"
        f" codec {pc['codec']}, {pc['framesDecoded']} frames decoded, {pc['audioPackets']} audio packets;"
        f" facecast peers {session['peers']}"
    )
    # The media came from Janus, and the page did not (also) watch the facecast server directly.
    assert pc["remote"] is not None, pc
    assert pc["remote"]["address"] == "127.0.0.1" and pc["remote"]["port"] in janus_udp_ports, (
        pc["remote"],
        sorted(janus_udp_ports),
    )
    assert session["peers"] == [] and session["viewers"] == 0, session["peers"]
    assert pc["state"] == "connected" and pc["errors"] == [], pc
    assert pc["codec"] == "video/H264" and pc["audioPackets"] > 0, pc
    # Full frame rate, and a picture (a face), not black.
    assert spoke_for_s < said["duration"], "the measurement outlasted the speech"
    assert (frame["width"], frame["height"]) == (SIZE, SIZE), frame
    assert frame["mean"] > 40, f"the video is black: {frame}"
    assert frame["faceStd"] > 15, f"the face region is uniform: {frame}"
    assert rates["fps"] >= MIN_PRESENTED_FPS, rates
