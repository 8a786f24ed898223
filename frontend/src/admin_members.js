// The operator page's deployment section: the processes of the deployment (web processes, workers,
// schedulers: kind, local host, last heartbeat, passes running, capacity) and the local hosts with their
// load and state, from GET /api/v1/admin/members (the shared members table). The section is built here and
// placed before the audit log, so the page's HTML does not change; it refreshes while the page is visible.
import { ago, h, isoTime, operatorText } from "./api.js";

const REFRESH_MS = 5_000;

function table(id, caption, headings, body) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { id, "aria-label": caption },
      h("thead", {}, h("tr", {}, ...headings.map((name) => h("th", { scope: "col" }, name)))),
      body,
    ),
  );
}

function badge(live, liveText, goneText) {
  return h("span", { class: `state ${live ? "state-running" : "state-failed"}` }, live ? liveText : goneText);
}

function section() {
  const status = h("p", { class: "status-line", id: "members-status", role: "status", "aria-live": "polite" });
  const members = h("tbody", { id: "members-rows" });
  const hosts = h("tbody", { id: "hosts-rows" });
  const box = h(
    "section",
    { class: "course-section", id: "members-section", "aria-labelledby": "members-heading" },
    h("h2", { id: "members-heading" }, "Workers and hosts"),
    h(
      "p",
      { class: "muted" },
      "The deployment's processes as they report themselves in the shared database, and each local host's labs against its capacity. A host whose workers stay silent past host_lost_after_s is lost: its labs are failed and new labs go elsewhere.",
    ),
    status,
    h("h3", { id: "hosts-heading" }, "Local hosts"),
    table("hosts-table", "Local hosts", ["Host", "State", "Labs", "Capacity", "Live workers", "Last heartbeat"], hosts),
    h("h3", { id: "processes-heading" }, "Processes"),
    table(
      "members-table",
      "Processes",
      ["Kind", "Process", "Host", "State", "Last heartbeat", "Jobs running", "Capacity"],
      members,
    ),
  );
  return { box, status, members, hosts };
}

function hostRows(hosts, now) {
  if (!hosts.length) {
    return [h("tr", {}, h("td", { colspan: "6", class: "empty" }, "No worker serves a local host of its own."))];
  }
  return hosts.map((host) =>
    h(
      "tr",
      { "data-host": host.name },
      h("td", { class: "nowrap" }, host.name),
      h("td", {}, badge(host.state === "live", "live", "lost")),
      h("td", { class: "num" }, String(host.labs)),
      h("td", { class: "num" }, host.capacity === null ? "unlimited" : String(host.capacity)),
      h("td", { class: "num" }, String(host.workers)),
      h("td", { class: "nowrap", title: isoTime(host.heartbeat_at) }, host.heartbeat_at ? ago(host.heartbeat_at, now) : "never"),
    ),
  );
}

function memberRows(members, now) {
  if (!members.length) {
    return [h("tr", {}, h("td", { colspan: "7", class: "empty" }, "No process has announced itself yet."))];
  }
  return members.map((m) =>
    h(
      "tr",
      { "data-member": m.id },
      h("td", {}, m.scheduler ? `${m.kind} (scheduler)` : m.kind),
      h("td", { class: "nowrap" }, m.id),
      h("td", {}, m.host || "—"),
      h("td", {}, badge(m.live, "live", "silent")),
      h("td", { class: "nowrap", title: isoTime(m.heartbeat_at) }, ago(m.heartbeat_at, now)),
      h("td", { class: "num" }, m.kind === "web" ? "—" : String(m.jobs_running)),
      h("td", { class: "num" }, m.capacity === null ? "—" : String(m.capacity)),
    ),
  );
}

async function load(api, parts) {
  try {
    const view = await api.get("/api/v1/admin/members");
    parts.hosts.replaceChildren(...hostRows(view.hosts, view.now));
    parts.members.replaceChildren(...memberRows(view.members, view.now));
    const live = view.members.filter((m) => m.live);
    const workers = live.filter((m) => m.kind === "worker").length;
    parts.status.textContent = `${live.length} live process${live.length === 1 ? "" : "es"} (${workers} worker${workers === 1 ? "" : "s"}), runner ${view.runner}`;
  } catch (err) {
    parts.status.textContent = operatorText(err);
  }
}

/** Add the section before the audit log and keep it fresh while the page is visible. */
export function startMembersSection(api) {
  const parts = section();
  const audit = document.querySelector("section.audit");
  if (audit) audit.before(parts.box);
  else document.querySelector("main").append(parts.box);
  load(api, parts);
  setInterval(() => {
    if (document.visibilityState === "visible") load(api, parts);
  }, REFRESH_MS);
}
