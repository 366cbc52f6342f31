"""Issue 12, tokens out of URLs, in headless Chromium against a `facecast serve` with an API token.

- The client page sends the saved token only as `Authorization: Bearer`: its session starts and its
  events arrive (read with fetch and a stream: EventSource cannot send headers).
- A browser's WebSocket (which cannot send headers either) authenticates with the subprotocol
  `facecast.bearer.<token>` beside `facecast`: Chromium accepts the server's `facecast` answer and
  streams; the same token in the WebSocket's URL is refused.
- The OBS view link, which carries the watch-only view token in its URL, still opens and connects.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import ServerProcess, chromium_page, chromium_path, facecast_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None, reason="chromium is not installed (apt-get install chromium)"
    ),
]

API_TOKEN = "browser-api-token-0123456789"
UI_TIMEOUT_MS = 30_000

# Opens the audio WebSocket in the page, streams half a second of silence as one utterance and
# resolves with what happened: "open:<negotiated protocol>", the event types, and the close code.
WEBSOCKET_JS = """async ([url, protocols]) => new Promise((resolve) => {
  const seen = [];
  const ws = protocols.length ? new WebSocket(url, protocols) : new WebSocket(url);
  ws.onopen = () => {
    seen.push("open:" + ws.protocol);
    ws.send(JSON.stringify({ type: "start", sample_rate: 16000, channels: 1, format: "s16le" }));
    ws.send(new Int16Array(8000).buffer);
    ws.send(JSON.stringify({ type: "end" }));
  };
  ws.onmessage = (ev) => {
    const event = JSON.parse(ev.data);
    seen.push(event.type);
    if (event.type === "playback_finished" || event.type === "error") ws.close(1000);
  };
  ws.onclose = (ev) => resolve({ seen, code: ev.code });
  setTimeout(() => resolve({ seen, code: -1 }), 20000);
})"""


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("facecast_secured")
    with facecast_server(workdir, extra_config=f"  api_token: {API_TOKEN}\n") as running:
        yield running
        print(f"--- server log (tail) ---\n{running.log_tail()}")


def api_call(server: ServerProcess, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        server.base_url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        data = resp.read()
    return json.loads(data) if data else None


async def test_page_with_a_saved_token_talks_and_gets_events(
    secured_server: ServerProcess, tmp_path: Path
) -> None:
    async with chromium_page(tmp_path / "profile", auto_accept_media=False) as page:
        requests: list[str] = []
        page.on("request", lambda req: requests.append(req.url))
        await page.goto(secured_server.base_url + "/")
        await page.wait_for_selector("body[data-ready='true']", timeout=UI_TIMEOUT_MS)
        await page.fill("#token", API_TOKEN)
        await page.click("#save-token")
        # Before the token was saved (data-ready waits for that first load) the page said it needs one;
        # from here on nothing may fail.
        errors_before = await page.evaluate("() => window.facecast.errors.length")
        await page.click("#start-session")
        await page.wait_for_function("() => window.facecast.state === 'connected'", timeout=UI_TIMEOUT_MS)
        await page.fill("#say-text", "Hello there.")
        await page.click("#say-button")
        await page.wait_for_function(
            "() => window.facecast.events.some(e => e.type === 'playback_finished')", timeout=UI_TIMEOUT_MS
        )
        types = await page.evaluate("() => window.facecast.events.map(e => e.type)")
        errors = await page.evaluate(f"() => window.facecast.errors.slice({errors_before})")
        await page.click("#stop-session")
    assert types.index("speaking_started") < types.index("playback_finished"), types
    assert errors == [], errors
    assert not [url for url in requests if API_TOKEN in url], requests


async def test_browser_websocket_authenticates_with_a_subprotocol(
    secured_server: ServerProcess, tmp_path: Path
) -> None:
    session = api_call(secured_server, "POST", "/v1/sessions", {})
    ws_url = secured_server.base_url.replace("http://", "ws://") + f"/v1/sessions/{session['id']}/audio"
    try:
        async with chromium_page(tmp_path / "profile", auto_accept_media=False) as page:
            await page.goto(secured_server.base_url + "/")
            by_protocol = await page.evaluate(
                WEBSOCKET_JS, [ws_url, ["facecast", f"facecast.bearer.{session['token']}"]]
            )
            in_url = await page.evaluate(WEBSOCKET_JS, [f"{ws_url}?token={session['token']}", []])
    finally:
        api_call(secured_server, "DELETE", f"/v1/sessions/{session['id']}")
    assert by_protocol["seen"][0] == "open:facecast", by_protocol
    assert "playback_finished" in by_protocol["seen"] and "error" not in by_protocol["seen"], by_protocol
    assert by_protocol["code"] == 1000, by_protocol
    assert in_url == {"seen": [], "code": 1006}, in_url  # the handshake was refused (401)


async def test_view_link_with_its_view_token_connects(secured_server: ServerProcess, tmp_path: Path) -> None:
    session = api_call(secured_server, "POST", "/v1/sessions", {})
    try:
        async with chromium_page(tmp_path / "profile", auto_accept_media=False) as page:
            await page.goto(secured_server.base_url + session["links"]["view"])
            await page.wait_for_function(
                "() => window.facecastView && window.facecastView.state === 'connected'",
                timeout=UI_TIMEOUT_MS,
            )
            assert await page.evaluate("() => window.facecastView.errors") == []
    finally:
        api_call(secured_server, "DELETE", f"/v1/sessions/{session['id']}")
