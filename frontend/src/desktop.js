// One browser desktop on one node of an environment: noVNC over the desktop websocket of docs/desktops.md.
// The page opens the websocket itself, waits for {"type": "ready"} (or an error and a close code, as for
// terminals), then hands the open socket to noVNC, which speaks RFB on it; the service already logged in to
// the node's VNC server, so noVNC sees security type None and never a password. Reconnects with backoff;
// a read-only viewer's noVNC sends no input (and the service drops any that a changed page would send).
import RFB from "@novnc/novnc";
import { afterClose } from "./reconnect.js";

const FATAL_CLOSES = {
  4403: "This desktop is not yours to open.",
  4404: "This machine has no desktop in your lab.",
};

const LOGIN_REFUSED = 4412;

export class DesktopSession {
  /**
   * @param {object} o
   * @param {string} o.envId
   * @param {string} o.node
   * @param {HTMLElement} o.container where the desktop is drawn, scaled to fit
   * @param {boolean} o.readOnly watch only: no keyboard, pointer or clipboard input
   * @param {() => string} o.getToken
   * @param {(state: string, detail: string|null) => void} o.onState
   * @param {() => void} o.onNotRunning the environment is not running (close 4409)
   * @param {() => Promise<boolean>} o.onAuthFailed the token was refused (4401): refresh it, true if it was
   * @param {(text: string) => void} o.onClipboard the desktop's clipboard changed
   */
  constructor(o) {
    Object.assign(this, o);
    this.state = "idle";
    this.wanted = false;
    this.attempt = 0;
    this.ws = null;
    this.rfb = null;
    this.timers = {};
    this.onTrouble = o.onTrouble || (() => {});
    this.lastError = null;
  }

  setState(state, detail = null) {
    this.state = state;
    this.onState(state, detail);
  }

  connect() {
    this.wanted = true;
    if (this.ws) return;
    clearTimeout(this.timers.retry);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const path = `/api/v1/environments/${encodeURIComponent(this.envId)}/desktop/${encodeURIComponent(this.node)}`;
    const ws = new WebSocket(`${scheme}://${location.host}${path}?token=${encodeURIComponent(this.getToken())}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.lastError = null;
    if (this.state !== "reconnecting") this.setState("connecting");
    ws.onmessage = (ev) => this.onControl(ws, ev);
    ws.addEventListener("close", (ev) => this.onClosed(ws, ev.code, ev.reason));
  }

  onControl(ws, ev) {
    if (typeof ev.data !== "string") return;
    let message;
    try {
      message = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (message.type === "error") this.lastError = message.message;
    if (message.type !== "ready") return;
    // noVNC takes the socket over from here (the server's next frame is RFB's ProtocolVersion).
    const rfb = new RFB(this.container, ws, { shared: true });
    rfb.scaleViewport = true;
    rfb.resizeSession = false;
    rfb.viewOnly = this.readOnly;
    rfb.focusOnClick = !this.readOnly;
    rfb.showDotCursor = true;
    rfb.addEventListener("connect", () => {
      this.attempt = 0;
      this.setState("connected");
    });
    rfb.addEventListener("clipboard", (e) => this.onClipboard(e.detail.text));
    this.rfb = rfb;
  }

  async onClosed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.rfb = null; // noVNC saw the close too and removed its canvas
    if (!this.wanted) return;
    if (code === 1000 && /paused|reset|deleted/.test(reason)) code = 4409; // the lab stopped under it
    if (code === LOGIN_REFUSED) {
      // An RDP desktop whose server refused the lab's login: say why; trying again would not help.
      this.wanted = false;
      this.setState("failed", `${this.lastError || reason}. Ask your course staff: the lab's login is wrong.`);
      return;
    }
    await afterClose(this, code, reason, FATAL_CLOSES);
  }

  /** Send text to the desktop's clipboard (a watcher sends nothing). */
  paste(text) {
    if (this.rfb && !this.readOnly) this.rfb.clipboardPasteFrom(text);
  }

  focus() {
    if (this.rfb && !this.readOnly) this.rfb.focus();
  }

  disconnect() {
    this.wanted = false;
    clearTimeout(this.timers.retry);
    if (this.rfb) this.rfb.disconnect();
    else if (this.ws) this.ws.close();
    this.ws = null;
    this.rfb = null;
    this.setState("idle");
  }
}
