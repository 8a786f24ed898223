// A course's class as a table (the course view for course staff, and the operator page): each learner's lab
// with its state, the score that counts and every attempt, time used, last activity, place in the queue,
// and a button that opens the lab read-only. Rows come from GET /api/v1/courses/{course}/class.
import { ago, h, isoTime } from "./api.js";

export const CLASS_COLUMNS = ["Learner", "Lab", "State", "Score", "Attempts", "Time used", "Last activity", "Queue"];

/** "1 h 05 min", "12 min", "40 s" for a number of seconds. */
export function duration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

function score(value, max) {
  const fmt = (n) => String(Math.round(Number(n) * 100) / 100);
  return `${fmt(value)} / ${fmt(max)}`;
}

/** Each attempt's time and score, newest first, folded under a summary. */
function attempts(member) {
  const list = member.attempts || [];
  if (!list.length) return h("span", { class: "muted" }, "none");
  return h(
    "details",
    { class: "attempts" },
    h("summary", {}, `${list.length} attempt${list.length === 1 ? "" : "s"}`),
    h(
      "ol",
      { reversed: true },
      ...[...list].reverse().map((a) => h("li", {}, h("time", { datetime: new Date(a.at * 1000).toISOString() }, isoTime(a.at)), ` — ${score(a.score, a.max_score)}`)),
    ),
  );
}

/**
 * The table's rows. `watch(member)` opens the member's lab read-only (it is given the button's click, so
 * that a new tab opens at the click and no popup blocker stops it). `names` maps the service's learner ids
 * (the LMS's anonymous ids) to the names the LMS gave the page, shown instead.
 */
export function classRows(members, watch, names = {}) {
  if (!members.length) {
    return [h("tr", {}, h("td", { colspan: String(CLASS_COLUMNS.length + 1), class: "empty" }, "No learner has opened this lab yet."))];
  }
  return members.map((m) => {
    const name = typeof names[m.learner] === "string" && names[m.learner] ? names[m.learner] : m.learner;
    return h(
      "tr",
      { "data-learner": m.learner, "data-env": m.id },
      h("td", {}, name, name !== m.learner ? h("div", { class: "muted id" }, m.learner) : null),
      h("td", { class: "nowrap" }, m.lab),
      h(
        "td",
        {},
        h("span", { class: `state state-${m.observed || "unknown"}` }, m.observed || "—"),
        m.progress && m.progress !== m.observed ? h("div", { class: "muted" }, m.progress) : null,
      ),
      h("td", { class: "nowrap" }, m.counted_score === null || m.counted_score === undefined ? h("span", { class: "muted" }, "not checked") : score(m.counted_score, m.max_score)),
      h("td", {}, attempts(m)),
      h("td", { class: "nowrap" }, duration(m.running_s)),
      h("td", { class: "nowrap", title: isoTime(m.last_activity_at) }, ago(m.last_activity_at)),
      h("td", {}, m.queue_position ? `#${m.queue_position}` : h("span", { class: "muted" }, "—")),
      h(
        "td",
        { class: "row-actions" },
        h(
          "button",
          {
            type: "button",
            class: "small",
            disabled: m.desired === "deleted",
            "aria-label": `Watch ${name}'s lab read-only`,
            onclick: () => watch(m),
          },
          "Watch",
        ),
      ),
    );
  });
}

/** Open a read-only lab page in a new tab: the tab opens at the click, the URL follows when `fetchView` answers. */
export async function openReadOnly(fetchView) {
  const tab = window.open("about:blank", "_blank");
  try {
    const view = await fetchView();
    if (tab) {
      tab.opener = null;
      tab.location.replace(view.lab_url);
    } else {
      location.assign(view.lab_url);
    }
  } catch (err) {
    if (tab) tab.close();
    throw err;
  }
}
