// Usage limits (docs/usage-limits.md): the lab time left under the lab's limit in the page's header, counting
// down each second while the lab runs (from the service's `usage.remaining_s`, looked at again on every status);
// past a `warn` limit a warning under it; past a `block` limit a notice in place of the lab, beside the learner's
// last check results (read-only: the lab stays paused until staff grant time or a new week begins).
import { h } from "./api.js";

/** 5400 -> "1 h 30 min", 42 -> "42 s". */
export function formatLeft(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (hours) return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
  if (minutes) return `${minutes} min ${s % 60} s`;
  return `${s} s`;
}

export class UsageMeter {
  /** @param {HTMLElement} after the meter is shown just after this element (the lab's meta line) */
  constructor(after) {
    // role=timer: read on request, not announced every second.
    this.meter = h("span", { class: "usage-meter", id: "usage-meter", role: "timer", hidden: true });
    this.warning = h("p", { class: "usage-warning", id: "usage-warning", role: "status", hidden: true });
    after.after(this.meter, this.warning);
    this.timer = null;
  }

  /** Show the status's `usage` (null: the lab has no limit). */
  update(usage) {
    clearInterval(this.timer);
    this.timer = null;
    this.meter.hidden = !usage;
    this.warning.hidden = !(usage && usage.over && !usage.blocked);
    if (!usage) return;
    this.warning.textContent = usage.over && !usage.blocked ? usage.message : "";
    const per = usage.per === "week" ? " this week" : "";
    const received = Date.now();
    const paint = () => {
      const spent = usage.counting ? (Date.now() - received) / 1000 : 0;
      const left = Math.max(0, usage.remaining_s - spent);
      this.meter.dataset.over = String(usage.over || left <= 0);
      this.meter.dataset.left = String(Math.floor(left));
      this.meter.textContent = usage.over || left <= 0 ? `No lab time left${per}` : `Lab time left${per}: ${formatLeft(left)}`;
    };
    paint();
    if (usage.counting && !usage.over) this.timer = setInterval(paint, 1000);
  }
}

/** The notice shown in place of the lab past a `block` limit. */
export function blockedNotice(status, readOnly) {
  const usage = status.usage;
  const again = usage.resets_at ? h("p", {}, `Your lab time starts afresh on ${new Date(usage.resets_at * 1000).toLocaleString()}.`) : null;
  return h(
    "div",
    { class: "notice notice-usage", id: "usage-blocked", role: "alert" },
    h("h2", {}, readOnly ? "This learner's lab time is used up" : "Your lab time is used up"),
    h("p", {}, usage.message),
    again,
    h("p", {}, "Your last check results are shown beside this message."),
  );
}
