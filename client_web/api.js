// Talking to the facecast server: JSON requests with the optional bearer token, the server's error
// shape turned into readable messages, and a Server-Sent Events reader that can send headers.
// Shared by the client page (app.js) and the bare OBS view (view.js).

/** An error from the API ({"error": {"code", "message"}}) or from not reaching the server at all. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status; // HTTP status, 0 when the server could not be reached
    this.code = code;
  }
}

export class ApiClient {
  /** @param {() => string} getToken returns the bearer token, or "" for none */
  constructor(getToken) {
    this.getToken = getToken;
  }

  headers(extra = {}) {
    const token = this.getToken();
    return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
  }

  /** fetch() that turns a network failure into an ApiError with a sentence a person can act on. */
  async fetch(path, init = {}) {
    try {
      return await fetch(path, { ...init, headers: this.headers(init.headers) });
    } catch (err) {
      if (init.signal && init.signal.aborted) throw err;
      throw new ApiError(0, "unreachable", `cannot reach the facecast server at ${location.origin} (is it running?)`);
    }
  }

  /**
   * One API call. `json` is sent as a JSON body, `form` as multipart; resolves to the parsed JSON
   * reply (or null for an empty one), rejects with ApiError carrying the server's message.
   */
  async request(method, path, { json, form, signal } = {}) {
    const init = { method, signal, headers: {} };
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    } else if (form !== undefined) {
      init.body = form; // the browser sets the multipart boundary itself
    }
    const resp = await this.fetch(path, init);
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!resp.ok) throw errorFromResponse(resp, data, text);
    return data;
  }

  /** Best-effort DELETE that survives the page closing (keepalive). */
  deleteOnUnload(path) {
    try {
      fetch(path, { method: "DELETE", headers: this.headers(), keepalive: true }).catch(() => {});
    } catch {
      // nothing to do: the page is going away
    }
  }
}

/** The ApiError for a failed response whose body is `text` (JSON error envelope or anything else). */
export function errorFromText(resp, text) {
  let data = null;
  try {
    data = JSON.parse(text);
  } catch {
    data = null;
  }
  return errorFromResponse(resp, data, text);
}

export function errorFromResponse(resp, data, text) {
  const e = data && typeof data === "object" ? data.error : null;
  if (e && typeof e === "object") {
    return new ApiError(resp.status, e.code || `http_${resp.status}`, e.message || resp.statusText);
  }
  const body = (text || "").replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 200);
  return new ApiError(resp.status, `http_${resp.status}`, `the server answered ${resp.status} ${resp.statusText}${body ? `: ${body}` : ""}`);
}

/**
 * Reads a text/event-stream until it ends or `signal` aborts, calling onEvent(type, data) for each
 * event. `type` is the SSE event name, or data.type for unnamed events; `data` is parsed JSON
 * where possible. Rejects with ApiError when the server refuses the stream.
 */
export async function readEventStream(client, path, signal, onEvent) {
  const resp = await client.fetch(path, { headers: { Accept: "text/event-stream" }, signal });
  if (!resp.ok) throw errorFromText(resp, await resp.text());
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // Events are separated by a blank line (LF or CRLF line ends).
    let match;
    while ((match = /\r?\n\r?\n/.exec(buffer))) {
      const block = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      dispatchBlock(block, onEvent);
    }
  }
}

function dispatchBlock(block, onEvent) {
  let name = "";
  const dataLines = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue; // comment / keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") dataLines.push(value);
  }
  if (!name && !dataLines.length) return;
  const raw = dataLines.join("\n");
  let data = raw;
  try {
    data = raw ? JSON.parse(raw) : {};
  } catch {
    data = raw;
  }
  const type = name || (data && typeof data === "object" && data.type) || "message";
  onEvent(type, data);
}
