// Access tokens and JSON calls to the stacklab API (docs/web-protocol.md).
//
// A page receives its token in the URL fragment (#token=T): it is moved to sessionStorage at once and the
// fragment is removed, so the token never reaches a server log, a referrer or the browser history.

/**
 * A failed call. `message` is a sentence for people (never an HTTP status, a URL or an exception text);
 * `detail` and `requestId` are for staff: the console gets them, the page shows only the reference.
 * `status` is 0 when the service could not be reached at all.
 */
export class ApiError extends Error {
  constructor(status, message, { detail = "", requestId = null } = {}) {
    super(message);
    this.status = status;
    this.detail = detail;
    this.requestId = requestId;
  }

  /** The service did not answer, or answered with a fault of its own: worth trying again by itself. */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

/** Take `#token=T` from the URL (if any) into sessionStorage under `key`, strip it, return the token. */
export function takeToken(key) {
  const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const fromUrl = fragment.get("token");
  if (fromUrl) {
    sessionStorage.setItem(key, fromUrl);
    fragment.delete("token");
    const rest = fragment.toString();
    const url = window.location.pathname + window.location.search + (rest ? `#${rest}` : "");
    history.replaceState(history.state, "", url);
  }
  return sessionStorage.getItem(key);
}

/**
 * A token's public claims, or {} if unreadable. Tokens are standard JWTs (header.claims.signature, base64url):
 * {sub, role, env, read_only, gen, exp, iss, aud}. The page only reads them (expiry, read-only); the server
 * checks the signature.
 */
export function tokenClaims(token) {
  try {
    const parts = String(token).split(".");
    if (parts.length !== 3) return {};
    const body = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(
      Uint8Array.from(atob(body + "=".repeat((4 - (body.length % 4)) % 4)), (c) => c.charCodeAt(0)),
    );
    const claims = JSON.parse(json);
    return claims && typeof claims === "object" && !Array.isArray(claims) ? claims : {};
  } catch {
    return {};
  }
}

/** Expiry (epoch seconds, the JWT's `exp`) of a token, or null if it cannot be read. */
export function tokenExpiry(token) {
  const claims = tokenClaims(token);
  return typeof claims.exp === "number" ? claims.exp : null;
}

export class Api {
  /** @param {string} storageKey where the token lives in sessionStorage */
  constructor(storageKey) {
    this.storageKey = storageKey;
    this.token = takeToken(storageKey);
  }

  setToken(token) {
    this.token = token;
    sessionStorage.setItem(this.storageKey, token);
  }

  async call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch (exc) {
      console.warn(`stacklab: ${method} ${path} did not reach the service:`, exc);
      throw new ApiError(0, peopleMessage(0), { detail: String(exc) });
    }
    if (response.status === 204) return null;
    let data = null;
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const requestId = (data && typeof data.request_id === "string" && data.request_id) || response.headers.get("X-Request-ID");
      const detail = technicalDetail(data) || text.slice(0, 500);
      console.warn(`stacklab: ${method} ${path} answered HTTP ${response.status}: ${detail} (request_id ${requestId})`);
      throw new ApiError(response.status, peopleMessage(response.status), { detail, requestId });
    }
    return data;
  }

  get(path) {
    return this.call("GET", path);
  }

  post(path, body) {
    return this.call("POST", path, body);
  }
}

/** What a learner reads for a failed call: what happened and what to do next (docs/web-protocol.md). */
export function peopleMessage(status) {
  if (status === 401) return "Your access to this lab has expired. Open the lab again from your course.";
  if (status === 403) return "This lab cannot be opened with this link any more. Open the lab again from your course.";
  if (status === 404) return "This lab no longer exists. Open the lab again from your course to get a fresh one.";
  if (status === 409) return "Your lab is not running yet: it is still starting or paused. We will try again in a moment.";
  if (status === 429) return "The lab service is busy. We will try again in a moment.";
  if (status === 0 || status >= 500) return "The lab service is not answering; we keep trying.";
  return "Something went wrong with this request. Try again; if it keeps happening, tell your course staff.";
}

function technicalDetail(data) {
  const detail = data && data.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  return "";
}

/** Human "3 min ago" for an epoch (seconds) or ISO timestamp. */
export function ago(when, now = Date.now() / 1000) {
  const t = epoch(when);
  if (t === null) return "—";
  const s = Math.max(0, Math.round(now - t));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(s < 36000 ? 1 : 0)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

export function epoch(when) {
  if (when === null || when === undefined || when === "") return null;
  if (typeof when === "number") return when;
  const parsed = Date.parse(when);
  return Number.isNaN(parsed) ? null : parsed / 1000;
}

export function isoTime(when) {
  const t = epoch(when);
  return t === null ? "" : `${new Date(t * 1000).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** Create an element: h("button", {class: "x", onclick: f}, "text", child...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** What an operator reads for a failed call: the service's own words and the request id to find its log. */
export function operatorText(err) {
  if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
  const what = err.detail ? `${err.detail} (HTTP ${err.status || "unreachable"})` : err.message;
  return err.requestId ? `${what} — reference: ${err.requestId}` : what;
}
