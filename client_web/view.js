// Bare view of one session (OBS Browser Source): connects by itself, plays video and audio
// full-frame, and reconnects when the connection drops. The session id comes from the path
// (/v1/sessions/{id}/view) or from ?session=ID; an optional ?token= is sent as the bearer token
// (the session's watch-only view token, from its links.view).
//
// It watches through WHEP (a receive-only viewer; several may watch one session) with a complete
// offer: ICE is gathered before the POST, as the server answers once. The server's STUN/TURN servers
// come first, from GET /v1/sessions/{id}/ice_servers.

import { ApiClient, errorFromText } from "/api.js";

const ICE_GATHER_TIMEOUT_MS = 3000;
const CONNECT_TIMEOUT_MS = 20000;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15000;

const params = new URLSearchParams(location.search);
const pathMatch = location.pathname.match(/\/v1\/sessions\/([^/]+)\/view\/?$/);
const sessionId = pathMatch ? decodeURIComponent(pathMatch[1]) : params.get("session");
const api = new ApiClient(() => params.get("token") || "");

const video = document.getElementById("video");
const message = document.getElementById("message");

// For tests and debugging, like window.facecast on the client page.
const view = { state: "idle", sessionId, errors: [], pc: null, iceServers: null };
window.facecastView = view;

let retryMs = RETRY_MIN_MS;
let resource = null; // the WHEP session URL (Location), deleted when the page goes away

function say(text) {
  message.textContent = text;
  message.hidden = !text;
  if (text) view.errors.push(text);
}

async function connect() {
  view.state = "connecting";
  const ice = await api.request("GET", `/v1/sessions/${encodeURIComponent(sessionId)}/ice_servers`);
  view.iceServers = (ice && ice.ice_servers) || [];
  const pc = new RTCPeerConnection({ iceServers: view.iceServers, bundlePolicy: "max-bundle" });
  view.pc = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.addEventListener("track", (ev) => {
    stream.addTrack(ev.track);
    if (video.srcObject !== stream) video.srcObject = stream;
    video.play().catch(() => {
      // A normal browser may block sound without a click; OBS does not. Play muted meanwhile.
      video.muted = true;
      video.play().catch(() => {});
      document.getElementById("unmute").hidden = false;
    });
  });

  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const resp = await api.fetch(`/v1/sessions/${encodeURIComponent(sessionId)}/whep`, {
    method: "POST",
    headers: { "Content-Type": "application/sdp" },
    body: pc.localDescription.sdp,
  });
  const text = await resp.text();
  if (!resp.ok) throw errorFromText(resp, text);
  const location_ = resp.headers.get("Location");
  resource = location_ ? new URL(location_, location.href).href : null;
  await pc.setRemoteDescription({ type: "answer", sdp: text });

  // Resolves when the connection ends (failed or closed); rejects if it never comes up.
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the media connection did not come up")), CONNECT_TIMEOUT_MS);
    let lostTimer = 0;
    pc.addEventListener("connectionstatechange", () => {
      const state = pc.connectionState;
      view.state = state;
      if (state === "connected") {
        clearTimeout(timer);
        clearTimeout(lostTimer);
        retryMs = RETRY_MIN_MS;
        say("");
      } else if (state === "disconnected") {
        // Often recovers by itself; give it a few seconds before starting over.
        lostTimer = setTimeout(() => resolve(), 5000);
      } else if (state === "failed" || state === "closed") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ICE_GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function release() {
  if (view.pc) view.pc.close();
  view.pc = null;
  if (resource) api.deleteOnUnload(resource);
  resource = null;
}

async function run() {
  if (!sessionId) {
    say("No session in the address: open /v1/sessions/SESSION_ID/view");
    return;
  }
  for (;;) {
    try {
      await connect();
      say("Connection lost; reconnecting…");
    } catch (err) {
      if (err.status === 404) {
        say(`Session ${sessionId} does not exist (ended or never started).`);
        view.state = "failed";
        release();
        return;
      }
      view.state = "failed";
      say(`Cannot play session ${sessionId}: ${err.message}. Retrying…`);
    }
    release();
    await new Promise((r) => setTimeout(r, retryMs));
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  }
}

document.getElementById("unmute").addEventListener("click", () => {
  video.muted = false;
  document.getElementById("unmute").hidden = true;
});
window.addEventListener("pagehide", release);
run();
