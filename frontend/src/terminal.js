// One browser terminal attached to one node of an environment, over the terminal websocket of
// docs/web-protocol.md: binary frames both ways, JSON control messages, acks after xterm.js has rendered,
// a per-tab session id (sessionStorage) and the stream offset so that a reconnect re-attaches to the same
// shell and replays only what this page has not seen yet.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { afterClose, retryLater } from "./reconnect.js";

const ACK_EVERY = 32 * 1024; // bytes rendered before an immediate ack (the protocol asks for <= 64 KiB)
const ACK_IDLE_MS = 150; // smaller amounts are acked when output pauses
const PING_MS = 25_000;

const FATAL_CLOSES = {
  4403: "This terminal is not yours to open.",
  4404: "This machine does not exist in your lab.",
};

function randomId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text).catch(() => legacyCopy(text));
  }
  legacyCopy(text);
  return Promise.resolve();
}

function legacyCopy(text) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  try {
    document.execCommand("copy");
  } finally {
    area.remove();
  }
}

export const THEME = {
  background: "#11161d",
  foreground: "#d8dee9",
  cursor: "#f0c674",
  cursorAccent: "#11161d",
  selectionBackground: "#3b5b7c",
  black: "#1b222c",
  red: "#ef6b73",
  green: "#8fd18b",
  yellow: "#f0c674",
  blue: "#6cb0ff",
  magenta: "#c89af5",
  cyan: "#6fd3d8",
  white: "#d8dee9",
  brightBlack: "#5c6773",
  brightRed: "#ff8a91",
  brightGreen: "#a8e6a3",
  brightYellow: "#ffd98a",
  brightBlue: "#8cc4ff",
  brightMagenta: "#dab4ff",
  brightCyan: "#93e6ea",
  brightWhite: "#ffffff",
};

export class TerminalSession {
  /** Whether new terminals start in xterm.js's screen-reader mode (the page's toggle sets it). */
  static screenReaderMode = false;

  /**
   * @param {object} o
   * @param {string} o.envId
   * @param {string} o.node
   * @param {HTMLElement} o.container element the terminal fills
   * @param {boolean} [o.readOnly] watch only: keys are not sent (the server would drop them anyway)
   * @param {() => string} o.getToken current access token
   * @param {(state: string, detail?: string) => void} o.onState connecting|connected|reconnecting|ended|paused|failed
   * @param {() => void} o.onNotRunning the environment is not running (close 4409)
   * @param {() => Promise<boolean>} o.onAuthFailed refresh the token; true if a fresh one is there
   * @param {(attempt: number) => void} [o.onTrouble] called on each failed reconnect attempt
   * @param {(reason: string) => void} [o.onEnded] the server ended this session (`closed` message)
   * @param {() => void} [o.onLeave] the learner pressed the key that leaves the terminal (Ctrl+])
   */
  constructor(o) {
    Object.assign(this, {
      envId: o.envId,
      node: o.node,
      container: o.container,
      readOnly: Boolean(o.readOnly),
      getToken: o.getToken,
      onState: o.onState,
      onNotRunning: o.onNotRunning,
      onAuthFailed: o.onAuthFailed,
      onTrouble: o.onTrouble || (() => {}),
      onEnded: o.onEnded || (() => {}),
      onLeave: o.onLeave || (() => this.term.blur()),
    });
    this.escapeArmed = false; // Esc was the last key: a Tab now leaves the terminal instead of completing
    this.storageKey = `stacklab.term.${this.envId}.${this.node}`;
    this.session = sessionStorage.getItem(this.storageKey);
    if (!this.session) this.newSessionId();
    this.offset = 0; // stream offset of the next output byte we will receive
    this.rendered = 0; // stream offset up to which xterm.js has rendered
    this.acked = 0;
    this.ws = null;
    this.state = "idle";
    this.attempt = 0;
    this.wanted = false; // whether we should be connected
    this.timers = {};
    this.encoder = new TextEncoder();

    this.term = new Terminal({
      cursorBlink: true,
      fontFamily: '"DejaVu Sans Mono", "Cascadia Mono", "Menlo", "Consolas", monospace',
      fontSize: 14,
      lineHeight: 1.1,
      scrollback: 5000,
      theme: THEME,
      allowProposedApi: false,
      screenReaderMode: TerminalSession.screenReaderMode,
      disableStdin: this.readOnly,
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(this.container);
    this.term.attachCustomKeyEventHandler((ev) => this.onKey(ev));
    this.term.onData((data) => this.sendInput(this.encoder.encode(data)));
    this.term.onBinary((data) => this.sendInput(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
    this.term.onResize(({ cols, rows }) => this.sendJson({ type: "resize", cols, rows }));
    this.resizeObserver = new ResizeObserver(() => this.scheduleFit());
    this.resizeObserver.observe(this.container);
    this.scheduleFit();
  }

  newSessionId() {
    this.session = randomId();
    sessionStorage.setItem(this.storageKey, this.session);
  }

  /**
   * Keys xterm.js should leave to us or to the browser: copy and paste shortcuts, and the ways out of the
   * terminal (WCAG 2.1.2, no keyboard trap): Ctrl+] moves the focus out, and Esc then Tab (or Shift+Tab)
   * lets the browser move it on as anywhere else, while a plain Tab still completes in the shell.
   */
  onKey(ev) {
    if (ev.type !== "keydown") return true;
    const key = ev.key.toLowerCase();
    if (ev.ctrlKey && !ev.altKey && !ev.metaKey && (ev.key === "]" || ev.code === "BracketRight")) {
      ev.preventDefault();
      this.onLeave();
      return false;
    }
    if (ev.key === "Tab" && this.escapeArmed && !ev.ctrlKey && !ev.altKey) {
      this.escapeArmed = false;
      return false;
    }
    if (!["Shift", "Control", "Alt", "Meta"].includes(ev.key)) this.escapeArmed = ev.key === "Escape";
    if (ev.ctrlKey && ev.shiftKey && !ev.altKey && key === "c") {
      if (this.term.hasSelection()) copyText(this.term.getSelection());
      ev.preventDefault();
      return false;
    }
    if (ev.ctrlKey && !ev.shiftKey && !ev.altKey && key === "c" && this.term.hasSelection()) {
      // Like most terminal apps: Ctrl+C copies when text is selected, and interrupts otherwise.
      copyText(this.term.getSelection());
      this.term.clearSelection();
      ev.preventDefault();
      return false;
    }
    if ((ev.ctrlKey && ev.shiftKey && key === "v") || (ev.shiftKey && key === "insert")) {
      // Leave it to the browser: its paste event reaches xterm.js, which sends the text as input.
      return false;
    }
    return true;
  }

  scheduleFit() {
    if (this.timers.fit) return;
    this.timers.fit = requestAnimationFrame(() => {
      this.timers.fit = null;
      this.fitNow();
    });
  }

  fitNow() {
    if (!this.container.offsetWidth || !this.container.offsetHeight) return;
    try {
      this.fit.fit();
    } catch {
      // not rendered yet
    }
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const params = new URLSearchParams({
      token: this.getToken() || "",
      session: this.session,
      cols: String(this.term.cols),
      rows: String(this.term.rows),
      offset: String(this.offset),
    });
    const path = `/api/v1/environments/${encodeURIComponent(this.envId)}/terminal/${encodeURIComponent(this.node)}`;
    return `${scheme}//${location.host}${path}?${params}`;
  }

  setState(state, detail) {
    this.state = state;
    this.onState(state, detail);
  }

  /** Connect (or re-attach) now. */
  connect() {
    this.wanted = true;
    clearTimeout(this.timers.retry);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    this.fitNow();
    this.setState(this.attempt ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      clearInterval(this.timers.ping);
      this.timers.ping = setInterval(() => this.sendJson({ type: "ping" }), PING_MS);
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      if (typeof ev.data === "string") this.onControl(ev.data);
      else this.onOutput(new Uint8Array(ev.data));
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      clearInterval(this.timers.ping);
      this.onClosed(ev.code, ev.reason);
    };
  }

  onControl(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.type === "ready") {
      const next = Number(msg.offset) || 0;
      if (next < this.offset) {
        // The server started a new shell for this session: the old stream is gone.
        this.term.write("\r\n\x1b[2m— a new shell was started —\x1b[0m\r\n");
      }
      this.offset = next;
      this.rendered = Math.max(this.rendered, next);
      this.acked = Math.min(this.acked, this.rendered);
      this.attempt = 0;
      this.setState("connected");
      // The size may have changed while we were away.
      this.sendJson({ type: "resize", cols: this.term.cols, rows: this.term.rows });
    } else if (msg.type === "error") {
      this.setState(this.state, msg.message || "terminal error");
      this.lastError = msg.message;
    } else if (msg.type === "closed") {
      this.ended = msg.reason || "the shell ended";
    }
  }

  onOutput(bytes) {
    this.offset += bytes.length;
    const end = this.offset;
    this.term.write(bytes, () => {
      this.rendered = Math.max(this.rendered, end);
      this.maybeAck();
    });
  }

  maybeAck() {
    const pending = this.rendered - this.acked;
    if (pending <= 0) return;
    if (pending >= ACK_EVERY) {
      this.sendAck();
    } else if (!this.timers.ack) {
      this.timers.ack = setTimeout(() => {
        this.timers.ack = null;
        this.sendAck();
      }, ACK_IDLE_MS);
    }
  }

  sendAck() {
    if (this.rendered <= this.acked) return;
    if (this.sendJson({ type: "ack", offset: this.rendered })) this.acked = this.rendered;
  }

  async onClosed(code, reason) {
    clearTimeout(this.timers.ack);
    this.timers.ack = null;
    if (!this.wanted) return;
    if (this.ended) {
      const why = this.ended;
      this.ended = null;
      this.wanted = false;
      this.setState(/another tab/i.test(why) ? "taken" : "ended", why);
      this.onEnded(why);
      return;
    }
    await afterClose(this, code, reason, FATAL_CLOSES);
  }

  scheduleReconnect(detail) {
    retryLater(this, detail);
  }

  /** Start a fresh shell (after the previous one ended). */
  restart() {
    this.newSessionId();
    this.offset = 0;
    this.rendered = 0;
    this.acked = 0;
    this.attempt = 0;
    this.term.reset();
    this.connect();
  }

  /** Stop without reconnecting (the environment went away, or the page switches views). */
  disconnect() {
    this.wanted = false;
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.ping);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "client closed");
    }
  }

  /** Forget the shell (after a reset): the next connect starts a new one. */
  forget() {
    sessionStorage.removeItem(this.storageKey);
  }

  dispose() {
    this.disconnect();
    clearTimeout(this.timers.ack);
    this.resizeObserver.disconnect();
    this.term.dispose();
  }

  sendInput(bytes) {
    if (this.readOnly) return;
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.state !== "connected") return;
    this.ws.send(bytes);
  }

  sendJson(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  focus() {
    this.term.focus();
  }

  /** The whole buffer as plain text (tests and accessibility helpers read it). */
  text() {
    const buffer = this.term.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i += 1) {
      const line = buffer.getLine(i);
      if (line) lines.push(line.translateToString(true));
    }
    return lines.join("\n").replace(/\n+$/, "");
  }
}
