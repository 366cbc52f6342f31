// facecast browser client: pick or upload a portrait, start a session, and talk with it live.
//
// One RTCPeerConnection per session, negotiated without trickle ICE: the page gathers all of its
// candidates first and sends one complete offer (POST /v1/sessions/{id}/webrtc), because the server
// answers once, with its own candidates already in the answer.
//
// The offer always carries an audio transceiver in sendrecv: the avatar's voice comes back on it and
// the microphone goes out on it. Turning the microphone on or off only swaps the sender's track
// (replaceTrack), so no renegotiation is ever needed and the server keeps one stable audio input.
//
// For tests and debugging, `window.facecast` exposes the live state (see the `facecast` object).

import { ApiClient, ApiError, readEventStream } from "./api.js";

const ICE_GATHER_TIMEOUT_MS = 3000; // host candidates take milliseconds; STUN/TURN may take longer
const CONNECT_TIMEOUT_MS = 20000; // from the answer to "connected"
const STATS_INTERVAL_MS = 1000;
const EVENT_LOG_MAX = 200;
const TOKEN_KEY = "facecast.token";

const $ = (id) => document.getElementById(id);

// ---- state visible to tests ---------------------------------------------------------------------

const facecast = {
  state: "idle", // idle | starting | connecting | connected | disconnected | failed | closed
  sessionId: null,
  avatarId: null,
  micOn: false,
  stats: emptyStats(),
  events: [], // SSE events as received: {type, data, at}
  errors: [], // every message shown in the error banner, oldest first
  pc: null,
  remoteStream: null, // the avatar's video and voice as received
};
window.facecast = facecast;

function emptyStats() {
  return {
    fps: 0, // frames decoded per second over the last stats interval (getStats)
    presentedFps: 0, // frames painted per second (requestVideoFrameCallback)
    framesPresented: 0, // frames painted since the session connected (one callback loop counts them)
    framesDecoded: 0,
    framesDropped: 0,
    frameWidth: 0,
    frameHeight: 0,
    rttMs: null, // ICE candidate-pair round trip (STUN consent checks)
    audioPacketsReceived: 0,
    audioSamplesReceived: 0,
    audioLevel: 0, // 0..1, the avatar's voice as received
    micPacketsSent: 0,
    at: 0, // performance.now() of this sample
  };
}

// ---- API ----------------------------------------------------------------------------------------

const api = new ApiClient(() => localStorage.getItem(TOKEN_KEY) || "");

// ---- messages -------------------------------------------------------------------------------------

function describeError(err) {
  if (err instanceof ApiError) {
    if (err.status === 401 || err.status === 403) {
      return `${err.message} (enter the server's API token under "Access")`;
    }
    return err.message;
  }
  return err && err.message ? err.message : String(err);
}

function showError(context, err) {
  const text = err === undefined ? context : `${context}: ${describeError(err)}`;
  facecast.errors.push(text);
  $("error-text").textContent = text;
  $("error").hidden = false;
  logLine("error", text);
  console.error(text, err);
}

function clearError() {
  $("error").hidden = true;
}

let noticeTimer = 0;
function showNotice(text, ms = 4000) {
  const el = $("notice");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(noticeTimer);
  if (ms) noticeTimer = setTimeout(() => (el.hidden = true), ms);
}

function logLine(type, detail) {
  const li = document.createElement("li");
  li.className = `ev ev-${type.replace(/[^a-z_]/gi, "")}`;
  const time = new Date().toLocaleTimeString([], { hour12: false });
  li.textContent = `${time}  ${type}${detail ? "  " + detail : ""}`;
  const log = $("event-log");
  log.prepend(li);
  while (log.children.length > EVENT_LOG_MAX) log.lastChild.remove();
}

function setState(state) {
  facecast.state = state;
  $("conn-state").textContent = state;
  $("conn-state").dataset.state = state;
  const live = state === "connecting" || state === "connected" || state === "disconnected";
  const inSession = facecast.sessionId !== null;
  $("start-session").disabled = inSession || state === "starting";
  $("stop-session").disabled = !inSession;
  $("say-text").disabled = !inSession;
  $("say-button").disabled = !inSession;
  $("interrupt-button").disabled = !inSession;
  $("video-placeholder").hidden = live;
}

// ---- avatars ------------------------------------------------------------------------------------

// The first choice is always the server's built-in portrait (a session started without an avatar).
const DEFAULT_AVATAR = "";

async function loadAvatars(selectId) {
  const select = $("avatar-select");
  const previous = selectId !== undefined ? selectId : select.value;
  let avatars;
  try {
    const body = await api.request("GET", "/v1/avatars");
    avatars = Array.isArray(body) ? body : body.avatars || body.items || [];
  } catch (err) {
    select.replaceChildren(new Option("Default portrait (built in)", DEFAULT_AVATAR));
    showError("Could not load the portraits", err);
    return;
  }
  select.replaceChildren(new Option("Default portrait (built in)", DEFAULT_AVATAR));
  for (const a of avatars) {
    const label = a.name || a.filename || a.id;
    select.append(new Option(label === a.id ? a.id : `${label} (${String(a.id).slice(0, 8)})`, a.id));
  }
  if (previous && avatars.some((a) => a.id === previous)) select.value = previous;
}

async function uploadAvatar() {
  const file = $("avatar-file").files[0];
  if (!file) {
    showError("Choose an image file to upload first");
    return;
  }
  const form = new FormData();
  form.append("image", file, file.name);
  const button = $("upload-avatar");
  button.disabled = true;
  button.textContent = "Uploading…";
  try {
    const avatar = await api.request("POST", "/v1/avatars", { form });
    clearError();
    showNotice(`Portrait ready: ${avatar.id}`);
    logLine("avatar", `uploaded ${avatar.id}`);
    await loadAvatars(avatar.id);
  } catch (err) {
    showError("The portrait could not be used", err);
  } finally {
    button.disabled = false;
    button.textContent = "Upload";
  }
}

// ---- microphone ---------------------------------------------------------------------------------

let micTrack = null;
let audioSender = null; // the sendrecv audio transceiver's sender, once connected

async function acquireMic() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error(
      "this page cannot use a microphone: browsers only allow it on https:// pages or on localhost",
    );
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      // Echo cancellation keeps the avatar's own voice (from the speakers) out of the microphone.
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      video: false,
    });
    return stream.getAudioTracks()[0];
  } catch (err) {
    switch (err && err.name) {
      case "NotAllowedError":
      case "SecurityError":
        throw new Error(
          "the permission was refused. Allow the microphone for this site in the browser's " +
            "address bar or settings, or keep it off and type text instead",
        );
      case "NotFoundError":
      case "OverconstrainedError":
        throw new Error("no microphone was found on this device");
      case "NotReadableError":
      case "AbortError":
        throw new Error("the microphone is busy or unavailable (another application may be using it)");
      default:
        throw err;
    }
  }
}

async function setMic(on) {
  const button = $("mic-toggle");
  button.disabled = true;
  try {
    if (on) {
      micTrack = await acquireMic();
      micTrack.addEventListener("ended", () => {
        showError("The microphone stopped (unplugged or permission withdrawn)");
        setMic(false);
      });
      if (audioSender) await audioSender.replaceTrack(micTrack);
    } else {
      if (audioSender) await audioSender.replaceTrack(null);
      if (micTrack) micTrack.stop(); // releases the device: the browser's recording indicator goes off
      micTrack = null;
    }
    facecast.micOn = on;
    logLine("mic", on ? "on" : "off");
  } catch (err) {
    facecast.micOn = false;
    if (micTrack) micTrack.stop();
    micTrack = null;
    showError("Cannot use the microphone", err);
  } finally {
    button.disabled = false;
    button.setAttribute("aria-pressed", String(facecast.micOn));
    button.textContent = facecast.micOn ? "Microphone on" : "Microphone off";
    button.classList.toggle("on", facecast.micOn);
  }
}

// ---- session and WebRTC -------------------------------------------------------------------------

let sessionAbort = null; // aborts the event stream and timers of the current session
let statsTimer = 0;
let connectTimer = 0;

async function startSession() {
  clearError();
  const avatar = $("avatar-select").value;
  setState("starting");
  let session;
  try {
    // No avatar: the server uses its built-in portrait.
    session = await api.request("POST", "/v1/sessions", { json: avatar ? { avatar } : {} });
  } catch (err) {
    setState("idle");
    showError("The session could not start", err);
    return;
  }
  facecast.sessionId = session.id;
  facecast.avatarId = session.avatar || avatar || null;
  $("session-id").textContent = session.id;
  logLine("session", `started ${session.id}`);
  showViewLink(session);
  sessionAbort = new AbortController();
  followEvents(session.id, sessionAbort.signal);
  try {
    await connect(session);
  } catch (err) {
    setState("failed");
    showError("Could not connect to the session", err);
  }
}

function showViewLink(session) {
  // The link gets shared (OBS): it carries the session's watch-only view token, never the API token.
  let url = session.links && session.links.view;
  if (!url) {
    const params = new URLSearchParams({ session: session.id });
    if (session.view_token) params.set("token", session.view_token);
    url = `/view.html?${params}`;
  }
  const link = $("view-link");
  link.href = url;
  link.hidden = false;
  $("view-link-missing").hidden = true;
}

async function connect(session) {
  setState("connecting");
  facecast.stats = emptyStats();
  lastVideo = null;
  const pc = new RTCPeerConnection({ iceServers: session.ice_servers || [], bundlePolicy: "max-bundle" });
  facecast.pc = pc;
  const remote = new MediaStream();
  facecast.remoteStream = remote;

  pc.addTransceiver("video", { direction: "recvonly" });
  const audio = pc.addTransceiver("audio", { direction: "sendrecv" });
  audioSender = audio.sender;
  if (micTrack) await audioSender.replaceTrack(micTrack);

  pc.addEventListener("track", (ev) => {
    remote.addTrack(ev.track);
    attachVideo(remote);
  });
  pc.addEventListener("connectionstatechange", () => onConnectionState(pc));

  await pc.setLocalDescription(await pc.createOffer());
  await iceGatheringComplete(pc, ICE_GATHER_TIMEOUT_MS);
  const answer = await api.request("POST", `/v1/sessions/${encodeURIComponent(session.id)}/webrtc`, {
    json: { sdp: pc.localDescription.sdp, type: pc.localDescription.type },
  });
  if (pc !== facecast.pc) return; // stopped while waiting
  await pc.setRemoteDescription({ type: answer.type || "answer", sdp: answer.sdp });

  connectTimer = setTimeout(() => {
    if (pc === facecast.pc && pc.connectionState !== "connected") {
      setState("failed");
      showError(
        "The media connection did not come up in time: the browser could not reach the server's " +
          "media ports (a firewall, or a server on another network without a TURN server configured)",
      );
    }
  }, CONNECT_TIMEOUT_MS);
  statsTimer = setInterval(() => pollStats(pc), STATS_INTERVAL_MS);
  watchFrames(pc);
}

/** Resolves when the browser has gathered every candidate, or after `ms` with what it has. */
function iceGatheringComplete(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => pc.iceGatheringState === "complete" && done();
    const timer = setTimeout(done, ms);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function onConnectionState(pc) {
  if (pc !== facecast.pc) return;
  const state = pc.connectionState;
  if (state === "connected") {
    clearTimeout(connectTimer);
    clearError();
    setState("connected");
  } else if (state === "disconnected") {
    setState("disconnected");
    showNotice("The connection is interrupted; waiting for it to come back…", 0);
  } else if (state === "failed") {
    clearTimeout(connectTimer);
    setState("failed");
    showError(
      "The connection to the server failed (the browser and the server could not exchange media). " +
        "Stop and start the session again",
    );
  } else if (state === "closed") {
    setState("closed");
  } else if (state === "connecting") {
    setState("connecting");
  }
  if (state === "connected") $("notice").hidden = true;
}

function attachVideo(stream) {
  const video = $("video");
  if (video.srcObject !== stream) video.srcObject = stream;
  video.muted = false;
  // Start was clicked, so sound may autoplay; where the browser still refuses, play muted and ask.
  video.play().catch(() => {
    video.muted = true;
    video.play().catch(() => {});
    $("unmute").hidden = false;
  });
}

async function stopSession() {
  const id = facecast.sessionId;
  teardown();
  if (id) {
    try {
      await api.request("DELETE", `/v1/sessions/${encodeURIComponent(id)}`);
      logLine("session", `stopped ${id}`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) showError("Stopping the session failed", err);
    }
  }
}

function teardown() {
  clearInterval(statsTimer);
  clearTimeout(connectTimer);
  stopWatchingFrames();
  if (sessionAbort) sessionAbort.abort();
  sessionAbort = null;
  if (facecast.pc) {
    // Keep the microphone track: the toggle still says it is on, and the next session reuses it.
    facecast.pc.getSenders().forEach((s) => s.track && s.replaceTrack(null).catch(() => {}));
    facecast.pc.close();
  }
  facecast.pc = null;
  facecast.remoteStream = null;
  audioSender = null;
  facecast.sessionId = null;
  // No session, no figures: the last fps and round trip must not linger after Stop.
  facecast.stats = emptyStats();
  lastVideo = null;
  showFigures(facecast.stats);
  $("video").srcObject = null;
  $("session-id").textContent = "–";
  $("view-link").hidden = true;
  $("view-link-missing").hidden = false;
  setState("idle");
}

// ---- talking ------------------------------------------------------------------------------------

async function say(event) {
  event.preventDefault();
  const input = $("say-text");
  const text = input.value.trim();
  if (!text || !facecast.sessionId) return;
  try {
    await api.request("POST", `/v1/sessions/${encodeURIComponent(facecast.sessionId)}/say`, { json: { text } });
    input.value = "";
  } catch (err) {
    showError("The avatar could not say that", err);
  }
}

async function interrupt() {
  if (!facecast.sessionId) return;
  try {
    await api.request("POST", `/v1/sessions/${encodeURIComponent(facecast.sessionId)}/interrupt`);
  } catch (err) {
    showError("Interrupt failed", err);
  }
}

// ---- live figures -------------------------------------------------------------------------------

let lastVideo = null; // previous inbound-rtp video sample, for the decode rate

async function pollStats(pc) {
  if (pc !== facecast.pc) return;
  let report;
  try {
    report = await pc.getStats();
  } catch {
    return; // closed meanwhile
  }
  if (pc !== facecast.pc) return; // stopped while waiting: the figures are blank now
  const s = facecast.stats;
  let transport = null;
  let pairs = [];
  report.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") {
      if (lastVideo && r.timestamp > lastVideo.timestamp) {
        s.fps = ((r.framesDecoded || 0) - (lastVideo.framesDecoded || 0)) / ((r.timestamp - lastVideo.timestamp) / 1000);
      }
      lastVideo = r;
      s.framesDecoded = r.framesDecoded || 0;
      s.framesDropped = r.framesDropped || 0;
      s.frameWidth = r.frameWidth || 0;
      s.frameHeight = r.frameHeight || 0;
    } else if (r.type === "inbound-rtp" && r.kind === "audio") {
      s.audioPacketsReceived = r.packetsReceived || 0;
      s.audioSamplesReceived = r.totalSamplesReceived || 0;
      s.audioLevel = r.audioLevel || 0;
    } else if (r.type === "outbound-rtp" && r.kind === "audio") {
      s.micPacketsSent = r.packetsSent || 0;
    } else if (r.type === "transport") {
      transport = r;
    } else if (r.type === "candidate-pair") {
      pairs.push(r);
    }
  });
  const pair =
    (transport && transport.selectedCandidatePairId && report.get(transport.selectedCandidatePairId)) ||
    pairs.find((p) => p.nominated && p.state === "succeeded");
  if (pair && typeof pair.currentRoundTripTime === "number") s.rttMs = pair.currentRoundTripTime * 1000;
  s.at = performance.now();

  showFigures(s);
}

function showFigures(s) {
  $("fps").textContent = s.fps ? s.fps.toFixed(1) : "–";
  $("rtt").textContent = s.rttMs === null ? "–" : s.rttMs.toFixed(1);
  $("audio-level").textContent = s.audioPacketsReceived ? `${Math.round(s.audioLevel * 100)}%` : "–";
}

// The one requestVideoFrameCallback loop ({video, handle}); a new session's loop replaces it.
let frameWatch = null;

// Counts frames actually painted (not just decoded), one second at a time, for the session of `pc`.
function watchFrames(pc) {
  stopWatchingFrames();
  const video = $("video");
  if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
  const watch = { video, handle: 0 };
  frameWatch = watch;
  let windowStart = 0;
  let count = 0;
  const onFrame = (now) => {
    // A callback still pending from an earlier session's loop ends here (cancel is the first guard).
    if (frameWatch !== watch || pc !== facecast.pc) return;
    facecast.stats.framesPresented += 1;
    if (!windowStart) windowStart = now;
    count += 1;
    if (now - windowStart >= 1000) {
      facecast.stats.presentedFps = (count * 1000) / (now - windowStart);
      windowStart = now;
      count = 0;
    }
    watch.handle = video.requestVideoFrameCallback(onFrame);
  };
  watch.handle = video.requestVideoFrameCallback(onFrame);
}

function stopWatchingFrames() {
  if (frameWatch && frameWatch.handle && "cancelVideoFrameCallback" in frameWatch.video) {
    frameWatch.video.cancelVideoFrameCallback(frameWatch.handle);
  }
  frameWatch = null;
}

// ---- events (SSE) ---------------------------------------------------------------------------------

// EventSource cannot send an Authorization header (and tokens stay out of URLs), so the stream is
// read with fetch instead. The server ends it with an `error` event, code server_shutdown, when it stops.
async function followEvents(sessionId, signal) {
  let delayMs = 1000;
  while (!signal.aborted) {
    try {
      await readEventStream(api, `/v1/sessions/${encodeURIComponent(sessionId)}/events`, signal, (type, data) => {
        delayMs = 1000;
        facecast.events.push({ type, data, at: Date.now() });
        logLine(type, summariseEvent(data));
        if (type === "error" && data.code === "server_shutdown") {
          showError("The server is shutting down: this session ends (start a new one once it is back)");
        } else if (type === "error") {
          showError("The server reported an error", new Error(data.message || JSON.stringify(data)));
        }
      });
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status === 404) return; // the session is gone
      logLine("events", `stream lost (${describeError(err)}), retrying`);
    }
    await new Promise((r) => setTimeout(r, delayMs));
    delayMs = Math.min(delayMs * 2, 10000);
  }
}

function summariseEvent(data) {
  if (!data || typeof data !== "object") return data ? String(data) : "";
  const parts = [];
  if (typeof data.position === "number") parts.push(`at ${data.position.toFixed(2)} s`);
  if (data.interrupted) parts.push("interrupted");
  if (data.message) parts.push(data.message);
  if (data.source) parts.push(`from ${data.source}`);
  return parts.join(", ");
}

// ---- wiring -------------------------------------------------------------------------------------

function init() {
  $("token").value = localStorage.getItem(TOKEN_KEY) || "";
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
    showNotice(token ? "Token saved in this browser." : "Token removed.");
    clearError();
    loadAvatars();
  });
  $("error-dismiss").addEventListener("click", clearError);
  $("refresh-avatars").addEventListener("click", () => loadAvatars($("avatar-select").value));
  $("upload-avatar").addEventListener("click", uploadAvatar);
  $("start-session").addEventListener("click", startSession);
  $("stop-session").addEventListener("click", stopSession);
  $("mic-toggle").addEventListener("click", () => setMic(!facecast.micOn));
  $("mic-toggle").disabled = false;
  $("say-form").addEventListener("submit", say);
  $("interrupt-button").addEventListener("click", interrupt);
  $("unmute").addEventListener("click", () => {
    $("video").muted = false;
    $("unmute").hidden = true;
  });
  // The session belongs to this page: leaving ends it, so reloads do not pile up rendering sessions.
  window.addEventListener("pagehide", () => {
    if (facecast.sessionId) api.deleteOnUnload(`/v1/sessions/${encodeURIComponent(facecast.sessionId)}`);
  });
  setState("idle");
  loadAvatars().then(() => {
    document.body.dataset.ready = "true";
  });
}

init();
