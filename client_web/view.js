// Bare view of one session (OBS Browser Source): connects by itself, plays video and audio
// full-frame, and reconnects when the connection drops. The session id comes from the path
// (/v1/sessions/{id}/view) or from ?session=ID; an optional ?token= is sent as the bearer token
// (the session's watch-only view token, from its links.view).
//
// With ?janus=URL&mountpoint=ID (or ?janus=URL&room=ID&feed=ID) it plays the session's broadcast from Janus
// instead (watchJanus below).
//
// It watches through WHEP (a receive-only viewer; several may watch one session) with a complete
// offer: ICE is gathered before the POST, as the server answers once. The server's STUN/TURN servers
// come first, from GET /v1/sessions/{id}/ice_servers.
//
// ?background=transparent: for a session created with background "transparent", whose video is packed
// 2:1 (the person's straight colour on the left, their alpha as grey on the right; WebRTC carries no
// alpha). The page is transparent, the <video> plays hidden as a texture source, and a WebGL canvas draws
// every new video frame (requestVideoFrameCallback) as premultiplied colour * alpha, so OBS's Browser
// Source shows the presenter over whatever lies below. A video that is not 2:1 is drawn opaque.

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

// For tests and debugging, like window.facecast on the client page. framesDrawn: video frames the
// transparent canvas drew; presentedFps: video frames the browser presented per second (rVFC's
// presentedFrames over the last PRESENTED_WINDOW_MS); packed: the video is 2:1 (colour | alpha).
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

  if (janusUrl) {
    await watchJanus(pc);
  } else {
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
  }

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

// ---- ?janus=URL&mountpoint=ID: the session's broadcast (POST /v1/sessions/{id}/broadcast), played from a
// Janus Streaming mountpoint through Janus's HTTP API: a Janus session, a handle on the Streaming plugin,
// `watch` (Janus's offer comes as an event of the long poll), our answer with `start`. The long poll goes
// on while the page plays: it keeps the Janus session alive.
// ?janus=URL&room=ID&feed=ID: a broadcast to a VideoRoom ("to": "videoroom"), the same way on the VideoRoom
// plugin, joining the room as a subscriber to that feed (`join`) instead of `watch`.
const janusUrl = (params.get("janus") || "").replace(/\/+$/, "");
const janusRoom = params.get("room");
let janusSession = null; // its URL, destroyed when the page goes away

async function janusPost(url, body) {
  const transaction = Math.random().toString(36).slice(2);
  const resp = await fetch(url, { method: "POST", body: JSON.stringify({ ...body, transaction }) });
  const reply = await resp.json();
  if (reply.janus === "error") throw new Error(`Janus refused (${reply.error.code}: ${reply.error.reason})`);
  const data = reply.plugindata && reply.plugindata.data;
  if (data && data.error) throw new Error(`Janus refused (${data.error_code}: ${data.error})`);
  return reply;
}

async function watchJanus(pc) {
  const created = await janusPost(janusUrl, { janus: "create" });
  const sessionUrl = (janusSession = `${janusUrl}/${created.data.id}`);
  const plugin = janusRoom ? "janus.plugin.videoroom" : "janus.plugin.streaming";
  const handle = await janusPost(sessionUrl, { janus: "attach", plugin });
  const handleUrl = `${sessionUrl}/${handle.data.id}`;
  const body = janusRoom
    ? { request: "join", ptype: "subscriber", room: Number(janusRoom), streams: [{ feed: Number(params.get("feed")) }] }
    : { request: "watch", id: Number(params.get("mountpoint")) };
  await janusPost(handleUrl, { janus: "message", body });
  let offer = null;
  while (!offer) {
    const events = [].concat(await (await fetch(`${sessionUrl}?maxev=5&rid=${Date.now()}`)).json());
    for (const ev of events) {
      const data = ev.plugindata && ev.plugindata.data;
      const what = janusRoom ? "the feed" : "the mountpoint";
      if (data && data.error) throw new Error(`Janus refused ${what} (${data.error_code}: ${data.error})`);
      if (ev.jsep) offer = ev.jsep;
    }
  }
  await pc.setRemoteDescription(offer);
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  await janusPost(handleUrl, { janus: "message", body: { request: "start" }, jsep: pc.localDescription });
  (async () => {
    while (view.pc === pc && janusSession === sessionUrl) {
      try {
        await fetch(`${sessionUrl}?maxev=5&rid=${Date.now()}`);
      } catch {
        return; // Janus went away: the connection state tells the loop in connect()
      }
    }
  })();
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

// ---- transparent view: colour | alpha video -> premultiplied WebGL canvas ----
const PRESENTED_WINDOW_MS = 2000;
// Codec noise around alpha 0 and 255 (a level or two in flat areas) would leave a faint haze over the
// whole scene below and a see-through face: alpha is stretched so that <= 3/255 is clear, >= 252/255 solid.
const ALPHA_CLEAR = 3 / 255;
const ALPHA_SOLID = 252 / 255;

const VERTEX_SHADER = `
attribute vec2 pos;
varying vec2 uv;
void main() {
  uv = vec2(0.5 * (pos.x + 1.0), 0.5 * (1.0 - pos.y)); // v = 0 at the top row of the video
  gl_Position = vec4(pos, 0.0, 1.0);
}`;
const FRAGMENT_SHADER = `
precision mediump float;
uniform sampler2D tex;
uniform bool twoHalves; // the video is colour | alpha (2:1)
uniform float halfTexel; // half a texel of the whole video, in u
varying vec2 uv;
void main() {
  if (twoHalves) {
    // Colour from the left half at (u/2, v), alpha from the right at (0.5 + u/2, v); clamped half a
    // texel inside each half so that linear filtering never reads across the seam.
    vec3 rgb = texture2D(tex, vec2(clamp(0.5 * uv.x, halfTexel, 0.5 - halfTexel), uv.y)).rgb;
    float a = texture2D(tex, vec2(clamp(0.5 + 0.5 * uv.x, 0.5 + halfTexel, 1.0 - halfTexel), uv.y)).g;
    a = clamp((a - ${ALPHA_CLEAR.toFixed(6)}) / ${(ALPHA_SOLID - ALPHA_CLEAR).toFixed(6)}, 0.0, 1.0);
    gl_FragColor = vec4(rgb * a, a); // premultiplied (the context's premultipliedAlpha: true)
  } else {
    gl_FragColor = vec4(texture2D(tex, uv).rgb, 1.0);
  }
}`;

function compileProgram(gl) {
  const program = gl.createProgram();
  for (const [type, source] of [[gl.VERTEX_SHADER, VERTEX_SHADER], [gl.FRAGMENT_SHADER, FRAGMENT_SHADER]]) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
    gl.attachShader(program, shader);
  }
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
  return program;
}

class AlphaCanvas {
  constructor(source) {
    this.video = source;
    this.canvas = document.createElement("canvas");
    this.canvas.id = "alpha-canvas";
    document.body.insertBefore(this.canvas, source.nextSibling);
    this.gl = null;
    this.samples = []; // [now ms, presentedFrames] of recent rVFC callbacks
    view.framesDrawn = 0;
    view.presentedFps = 0;
    view.packed = false;
    this.canvas.addEventListener("webglcontextlost", (ev) => {
      ev.preventDefault(); // ask for it back
      this.gl = null;
    });
    this.canvas.addEventListener("webglcontextrestored", () => this.setup());
    addEventListener("resize", () => this.layout());
    this.setup();
    this.schedule();
  }

  setup() {
    try {
      this.init();
    } catch (err) {
      this.gl = null;
      say(`The transparent view cannot be drawn: ${err.message}`);
    }
  }

  init() {
    const gl = this.canvas.getContext("webgl", {
      alpha: true, premultipliedAlpha: true, antialias: false, depth: false, stencil: false,
    });
    if (!gl) {
      say("This browser has no WebGL: the transparent view cannot be drawn.");
      return;
    }
    const program = compileProgram(gl);
    gl.useProgram(program);
    const buffer = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    const pos = gl.getAttribLocation(program, "pos");
    gl.enableVertexAttribArray(pos);
    gl.vertexAttribPointer(pos, 2, gl.FLOAT, false, 0, 0);
    gl.bindTexture(gl.TEXTURE_2D, gl.createTexture());
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    this.uniforms = {
      twoHalves: gl.getUniformLocation(program, "twoHalves"),
      halfTexel: gl.getUniformLocation(program, "halfTexel"),
    };
    this.gl = gl;
    this.size = "";
  }

  schedule() {
    if ("requestVideoFrameCallback" in this.video) {
      this.video.requestVideoFrameCallback((now, meta) => this.onVideoFrame(now, meta));
    } else {
      requestAnimationFrame((now) => this.onAnimationFrame(now));
    }
  }

  onVideoFrame(now, meta) {
    this.samples.push([now, meta.presentedFrames]);
    while (this.samples.length > 2 && now - this.samples[0][0] > PRESENTED_WINDOW_MS) this.samples.shift();
    const [t0, f0] = this.samples[0];
    if (now > t0) view.presentedFps = ((meta.presentedFrames - f0) * 1000) / (now - t0);
    this.draw();
    this.schedule();
  }

  onAnimationFrame() {
    // Without requestVideoFrameCallback: draw when the video's time moved (a new frame, roughly).
    if (this.video.currentTime !== this.lastTime) {
      this.lastTime = this.video.currentTime;
      this.draw();
    }
    this.schedule();
  }

  layout() {
    const { videoWidth: w, videoHeight: h } = this.video;
    if (!w || !h) return;
    view.packed = w === 2 * h;
    const width = view.packed ? w / 2 : w; // the picture one half shows
    const scale = Math.min(innerWidth / width, innerHeight / h);
    const cssW = Math.round(width * scale);
    const cssH = Math.round(h * scale);
    const style = this.canvas.style;
    style.width = `${cssW}px`;
    style.height = `${cssH}px`;
    style.left = `${Math.round((innerWidth - cssW) / 2)}px`;
    style.top = `${Math.round((innerHeight - cssH) / 2)}px`;
    this.canvas.width = Math.round(cssW * devicePixelRatio);
    this.canvas.height = Math.round(cssH * devicePixelRatio);
    this.size = `${w}x${h}x${innerWidth}x${innerHeight}x${devicePixelRatio}`;
    if (this.gl) this.gl.uniform1f(this.uniforms.halfTexel, 0.5 / w);
  }

  draw() {
    const gl = this.gl;
    const { videoWidth: w, videoHeight: h } = this.video;
    if (!gl || !w || !h) return;
    if (this.size !== `${w}x${h}x${innerWidth}x${innerHeight}x${devicePixelRatio}`) this.layout();
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, this.video);
    gl.uniform1i(this.uniforms.twoHalves, view.packed ? 1 : 0);
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    view.framesDrawn += 1;
  }
}

if (params.get("background") === "transparent") {
  document.documentElement.classList.add("transparent");
  document.body.classList.add("transparent");
  view.alpha = new AlphaCanvas(video);
}

function release() {
  if (view.pc) view.pc.close();
  view.pc = null;
  if (resource) api.deleteOnUnload(resource);
  resource = null;
  if (janusSession) {
    fetch(janusSession, { method: "POST", keepalive: true, body: JSON.stringify({ janus: "destroy", transaction: "bye" }) }).catch(() => {});
    janusSession = null;
  }
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
