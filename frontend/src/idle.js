// Idle means idle (docs/idle.md). An open page is not activity: only key presses and clicks are (the
// terminal's own input also counts on the service's side). Before the service pauses a lab nobody uses,
// the page warns with a countdown; a key press or click keeps the lab. The page tells the service when it is
// hidden (the lab is paused sooner: the lab's `idle_suspend_hidden`), shown again, and closed or navigated
// away from (a `pagehide` beacon: paused after `close_grace`, unless a page of the lab opens again, as a
// reload does). The deadline is the service's (`idle_suspend_at` on its clock): the page only looks again
// when it might come, so activity elsewhere (another tab, a command) moves it too.
import { h } from "./api.js";

const ACTIVITY_EVERY_MS = 15_000; // page activity is reported at most this often
const LOOK_AGAIN_MS = 1_000; // after the countdown ends: until the lab is paused (or kept running)
const OTHER_PAGE_ANSWER_MS = 1_000; // another page of the lab closed: answer after its beacon arrived

export class IdleWatch {
  /**
   * @param {object} o
   * @param {import("./api.js").Api} o.api the page's API client (its token authorizes the beacon too)
   * @param {string} o.base the environment's API path
   * @param {HTMLElement} o.before the warning is shown just before this element
   */
  constructor({ api, base, before }) {
    this.api = api;
    this.base = base;
    this.before = before;
    this.running = false; // the lab's terminals are shown
    this.timer = null;
    this.tick = null;
    this.deadline = null; // local ms when the service pauses the lab (warning shown)
    this.lastReport = 0;
    this.box = null;
    this.listening = false;
    // The lab's other pages in this browser: one that closes tells them, and they answer the service.
    this.channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(`stacklab:${base}`) : null;
  }

  /** The lab runs and its terminals are shown: watch for idleness. */
  start(status) {
    if (!this.running) this.presence("visible"); // after a reload: ends a close the old page reported late
    this.running = true;
    this.listen();
    this.schedule(status);
  }

  /** The lab is no longer shown running (paused, opening, failed): no warning, no timers. */
  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.hide();
  }

  /** Report presence from now on (a page that may change the lab: not a read-only watcher's). */
  listen() {
    if (this.listening) return;
    this.listening = true;
    for (const type of ["keydown", "pointerdown"]) {
      document.addEventListener(type, () => this.activity(), { capture: true, passive: true });
    }
    document.addEventListener("visibilitychange", () => this.visibility());
    window.addEventListener("pagehide", () => this.closed());
    window.addEventListener("pageshow", (ev) => {
      if (ev.persisted) this.presence("visible"); // back from the back/forward cache
    });
    if (this.channel) this.channel.onmessage = (ev) => this.otherClosed(ev.data);
  }

  /** Another page of this lab closed: this one is still here, so the lab is not left. Said after its beacon
   * (a moment later), as this page's own state: shown, or hidden (which counts down faster). */
  otherClosed(message) {
    if (message !== "closed") return;
    setTimeout(() => {
      this.presence("visible").then(() => {
        if (document.visibilityState === "hidden") this.presence("hidden");
      });
    }, OTHER_PAGE_ANSWER_MS);
  }

  /** Look again when the warning might be due (a status on the service's clock). */
  schedule(status) {
    clearTimeout(this.timer);
    if (!this.running || !status || !status.ready || typeof status.idle_suspend_at !== "number") return;
    const remainingMs = (status.idle_suspend_at - status.server_time) * 1000;
    const warningMs = (status.idle_warning_s || 60) * 1000;
    if (remainingMs <= warningMs) {
      this.warn(Date.now() + remainingMs);
      return;
    }
    this.hide();
    this.timer = setTimeout(() => this.look(), remainingMs - warningMs);
  }

  async look() {
    if (!this.running) return;
    try {
      const status = await this.api.get(this.base);
      if (!status.ready) {
        // Paused (the terminals hear it too and show the paused lab) or waking: nothing to count down.
        this.hide();
        return;
      }
      this.schedule(status);
    } catch {
      this.timer = setTimeout(() => this.look(), 5_000);
    }
  }

  // ---- the warning -------------------------------------------------------------------------------------

  warn(deadline) {
    const appearing = this.deadline === null;
    this.deadline = deadline;
    if (!this.box) {
      // The countdown is for the eyes; a screen reader hears one sentence when the warning appears.
      this.box = h(
        "div",
        { class: "idle-warning", id: "idle-warning" },
        h("span", { class: "idle-text", id: "idle-text", "aria-hidden": "true" }),
        h("span", { class: "visually-hidden", id: "idle-said", role: "alert" }),
        h("button", { type: "button", class: "primary", id: "idle-keep", onclick: () => this.activity() }, "Keep working"),
      );
      this.before.before(this.box);
    }
    this.box.hidden = false;
    if (appearing) {
      const seconds = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
      this.box.querySelector("#idle-said").textContent =
        `Your lab pauses in ${seconds} seconds unless you press a key or click.`;
    }
    clearInterval(this.tick);
    this.render();
    this.tick = setInterval(() => this.render(), 250);
  }

  render() {
    if (!this.box || this.deadline === null) return;
    const seconds = Math.max(0, Math.ceil((this.deadline - Date.now()) / 1000));
    const text = this.box.querySelector("#idle-text");
    this.box.dataset.seconds = String(seconds);
    if (seconds > 0) {
      text.textContent = `Pausing in ${seconds} s — press any key to keep working`;
      return;
    }
    text.textContent = "Pausing your lab…";
    clearInterval(this.tick);
    this.tick = null;
    // The service pauses it now, unless the lab asks to be kept (keep_running_while) or activity came.
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.look(), LOOK_AGAIN_MS);
  }

  hide() {
    clearInterval(this.tick);
    this.tick = null;
    this.deadline = null;
    if (this.box) {
      this.box.hidden = true;
      this.box.querySelector("#idle-said").textContent = "";
    }
  }

  get warning() {
    return this.deadline !== null;
  }

  // ---- activity and presence -------------------------------------------------------------------------

  /** A key press or click anywhere in the page (the terminal included). */
  activity() {
    if (!this.running) return;
    const now = Date.now();
    if (this.warning) {
      this.hide();
      this.lastReport = now;
      this.api
        .post(`${this.base}/activity`)
        .then(() => this.look())
        .catch(() => this.look());
      return;
    }
    if (now - this.lastReport < ACTIVITY_EVERY_MS) return;
    this.lastReport = now;
    this.api.post(`${this.base}/activity`).catch(() => {});
  }

  presence(state) {
    return this.api.post(`${this.base}/presence`, { state }).catch(() => {});
  }

  visibility() {
    if (document.visibilityState === "hidden") {
      this.presence("hidden");
    } else {
      this.presence("visible").then(() => this.look());
    }
  }

  /** The page goes away (closed, reloaded, navigated from): a beacon, which cannot set headers, so its
   * token rides in the body (never the URL); the service pauses the lab after the lab's close_grace unless
   * a page of it opens again. */
  closed() {
    if (!this.api.token || !navigator.sendBeacon) return;
    navigator.sendBeacon(`${this.base}/presence`, JSON.stringify({ state: "closed", token: this.api.token }));
    this.channel?.postMessage("closed");
  }
}
