"""Issue 14 (part 3), a transparent live session in headless Chromium: the OBS view page with
?background=transparent composites the packed video (colour | alpha as grey) into a transparent WebGL
canvas at full frame rate.

A `facecast serve` at 256x256 (30 fps) runs a session created with background "transparent" that speaks
(/say) while the view page plays it in a 512x512 viewport. A screenshot that keeps the page's
transparency (omit_background) must be clear where the person is not and solid on the face, and the
canvas must draw >= 25 new video frames a second (requestVideoFrameCallback; the session sends 30).

Regions, from the avatar's own files in the server's home (what the engine warps every frame):
- background: where the avatar's matte (matte.png) is 0 after growing the person by BACKGROUND_MARGIN of
  the frame on every side; the head sways a few pixels and the matte is warped with it, so the margin
  keeps the region off the moving edge, and what is left is the photo's background, nothing else.
- face: the middle half of the box around the face landmarks (landmarks.npy, normalised to the crop),
  well inside the face however the head turns.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from browser_support import ServerProcess, chromium_page, chromium_path
from PIL import Image

from facecast.bench.loopback import facecast_serve

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None, reason="chromium is not installed (apt-get install chromium)"
    ),
]

SIZE = 256  # the session's frames; the packed video is 512 x 256
VIEWPORT = 512  # square: the canvas fills it
TEXT = (
    "Good evening, and welcome to the show. Tonight we talk about computers, about the people who build "
    "them, and about the long road from a room full of relays to the machine on your desk."
)
MEASURE_S = 4.0
MIN_DRAWN_FPS = 25.0
MIN_CLEAR_FRACTION = 0.99
MIN_SOLID_FRACTION = 0.99
BACKGROUND_MARGIN = 0.06  # of the frame: the person grown by this before taking the background region
UI_TIMEOUT_MS = 30_000

# The canvas's rate of drawn (new) video frames over `seconds`, and the browser's rVFC figure.
DRAWN_FPS_JS = """async (seconds) => {
  const v = window.facecastView;
  const f0 = v.framesDrawn, t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  return {drawnFps: (v.framesDrawn - f0) * 1000 / (performance.now() - t0), presentedFps: v.presentedFps};
}"""


@pytest.fixture(scope="module")
def server_256(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with facecast_serve(tmp_path_factory.mktemp("facecast_transparent"), size=SIZE) as srv:
        yield srv
        print(f"--- server log (tail) ---\n{srv.log_tail()}")


def api_call(server: ServerProcess, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        text = resp.read()
    return json.loads(text) if text else None


def regions(server: ServerProcess, avatar_id: str, size: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """(background mask (size, size) bool, face box) in the screenshot's pixels, from the avatar's files."""
    folder = server.home / "avatars" / avatar_id
    matte = np.asarray(Image.open(folder / "matte.png").convert("L"))
    matte = cv2.resize(matte, (size, size), interpolation=cv2.INTER_LINEAR)
    grow = 2 * round(BACKGROUND_MARGIN * size) + 1
    person = cv2.dilate((matte > 0).astype(np.uint8), np.ones((grow, grow), np.uint8))
    landmarks = np.load(folder / "landmarks.npy")[:, :2] * size
    (x0, y0), (x1, y1) = landmarks.min(axis=0), landmarks.max(axis=0)
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 4, (y1 - y0) / 4
    face = (slice(round(cy - h), round(cy + h)), slice(round(cx - w), round(cx + w)))
    return person == 0, face


async def test_transparent_view_shows_the_presenter_over_nothing(
    server_256: ServerProcess, tmp_path: Path
) -> None:
    session = api_call(server_256, "POST", "/v1/sessions", {"background": "transparent"})
    sid = session["id"]
    try:
        async with chromium_page(tmp_path / "profile", auto_accept_media=False) as page:
            await page.set_viewport_size({"width": VIEWPORT, "height": VIEWPORT})
            await page.goto(server_256.base_url + session["links"]["view"] + "&background=transparent")
            await page.wait_for_function(
                "() => { const v = window.facecastView; return v && v.state === 'connected'"
                " && v.packed && v.framesDrawn > 30; }",
                timeout=UI_TIMEOUT_MS,
            )
            said = api_call(server_256, "POST", f"/v1/sessions/{sid}/say", {"text": TEXT})
            started = time.monotonic()
            await asyncio.sleep(1.0)  # the speech is playing
            rates = await page.evaluate(DRAWN_FPS_JS, MEASURE_S)
            shot = np.asarray(
                Image.open(io.BytesIO(await page.screenshot(omit_background=True))).convert("RGBA")
            )
            state = await page.evaluate(
                "() => { const v = window.facecastView; const c = document.querySelector('#alpha-canvas');"
                " const video = document.querySelector('#video');"
                " return {errors: v.errors, canvas: [c.clientWidth, c.clientHeight],"
                " video: [video.videoWidth, video.videoHeight], bodyBackground: getComputedStyle(document.body)"
                ".backgroundColor}; }"
            )
            spoke_until_s = time.monotonic() - started
    finally:
        api_call(server_256, "DELETE", f"/v1/sessions/{sid}")
    Image.fromarray(shot).save(tmp_path / "transparent_view.png")  # for a look when it fails
    background, face = regions(server_256, session["avatar"], VIEWPORT)
    alpha = shot[..., 3]
    clear = float((alpha[background] == 0).mean())
    solid = float((alpha[face] == 255).mean())
    print(
        f"transparent view: background alpha-0 fraction {clear:.4f} over {int(background.sum())} px;"
        f" face alpha-255 fraction {solid:.4f} (min {int(alpha[face].min())});"
        f" drawn {rates['drawnFps']:.1f} fps, presented (rVFC) {rates['presentedFps']:.1f} fps"
    )
    assert state["errors"] == [], state
    assert state["video"] == [2 * SIZE, SIZE] and state["canvas"] == [VIEWPORT, VIEWPORT], state
    assert state["bodyBackground"] == "rgba(0, 0, 0, 0)", state
    assert spoke_until_s < said["duration"], "the measurement outlasted the speech"
    assert background.mean() > 0.1, "the background region is too small to say anything"
    assert clear >= MIN_CLEAR_FRACTION, f"only {clear:.4f} of the background is clear"
    assert solid >= MIN_SOLID_FRACTION, f"only {solid:.4f} of the face is solid (min {alpha[face].min()})"
    assert shot[face][..., :3].mean() > 40, "the face is there but black: the colour did not come through"
    assert rates["drawnFps"] >= MIN_DRAWN_FPS, rates
