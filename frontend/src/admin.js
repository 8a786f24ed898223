// The operator view: /admin#token=T (an operator token, given after signing in with a named account).
// Lists environments (suspend, resume, delete, reset, history, a read-only view of the learner's lab) and
// the audit log of what operators did. The token is refreshed before it expires (its JWT `exp`).
import { Api, ApiError, ago, epoch, h, isoTime, operatorText, tokenClaims, tokenExpiry } from "./api.js";
import { startCourseSections } from "./admin_course.js";
import { startMembersSection } from "./admin_members.js";

const REFRESH_MS = 10_000;
const AUDIT_ROWS = 50;
const base = "/api/v1/admin/environments";
const api = new Api("stacklab.admin.token");
const $ = (id) => document.getElementById(id);

let rows = [];
let refreshTimer = null;
let tokenTimer = null;
let loading = false;

function filters() {
  return { course: $("filter-course").value.trim(), state: $("filter-state").value };
}

function keepFiltersInUrl() {
  const { course, state } = filters();
  const params = new URLSearchParams();
  if (course) params.set("course", course);
  if (state) params.set("state", state);
  const query = params.toString();
  history.replaceState(history.state, "", location.pathname + (query ? `?${query}` : ""));
}

function showError(err) {
  const box = $("admin-error");
  if (!err) {
    box.hidden = true;
    return;
  }
  box.replaceChildren(operatorText(err));
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    box.replaceChildren("Your operator session has expired. ", h("a", { href: "/admin/login" }, "Sign in again"), ".");
    clearInterval(refreshTimer);
    clearTimeout(tokenTimer);
  }
  box.hidden = false;
}

async function load() {
  if (loading) return;
  loading = true;
  const { course, state } = filters();
  const params = new URLSearchParams();
  if (course) params.set("course", course);
  if (state) params.set("state", state);
  $("status-line").textContent = "Loading…";
  try {
    const data = await api.get(`${base}${params.toString() ? `?${params}` : ""}`);
    rows = Array.isArray(data) ? data : (data && (data.environments || data.items)) || [];
    render();
    showError(null);
    $("status-line").textContent = `${rows.length} environment${rows.length === 1 ? "" : "s"} · updated ${new Date().toLocaleTimeString()}`;
    await loadAudit();
  } catch (err) {
    showError(err);
    $("status-line").textContent = "";
  } finally {
    loading = false;
  }
}

async function loadAudit() {
  const body = $("audit-rows");
  let entries;
  try {
    entries = await api.get(`/api/v1/admin/audit?limit=${AUDIT_ROWS}`);
  } catch (err) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: "6", class: "error-text" }, operatorText(err))));
    return;
  }
  if (!entries.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: "6", class: "empty" }, "No operator action yet.")));
    return;
  }
  body.replaceChildren(
    ...entries.map((e) =>
      h(
        "tr",
        { "data-audit": e.id },
        h("td", { class: "nowrap", title: ago(e.at) }, isoTime(e.at)),
        h("td", {}, e.operator),
        h("td", {}, e.action),
        h("td", { class: "id" }, e.env_id || ""),
        h("td", {}, e.target || ""),
        h("td", { class: "muted" }, e.detail || ""),
      ),
    ),
  );
}

function stateBadge(value) {
  return h("span", { class: `state state-${value || "unknown"}` }, value || "—");
}

function render() {
  const courses = [...new Set(rows.map((r) => r.course).filter(Boolean))].sort();
  $("course-options").replaceChildren(...courses.map((c) => h("option", { value: c })));
  const body = $("env-rows");
  if (!rows.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: "10", class: "empty" }, "No environment matches.")));
    return;
  }
  body.replaceChildren(
    ...rows.map((env) => {
      const moving = env.desired && env.desired !== env.observed;
      return h(
        "tr",
        { "data-env": env.id },
        h("td", { class: "id" }, env.id),
        h(
          "td",
          {},
          stateBadge(env.observed),
          moving ? h("span", { class: "muted", title: `desired: ${env.desired}` }, ` → ${env.desired}`) : null,
          env.progress && env.progress !== env.observed
            ? h("div", { class: "muted" }, env.progress)
            : null,
        ),
        h("td", {}, env.learner || "—"),
        h("td", {}, env.course || "—"),
        h("td", { class: "nowrap" }, env.lab || "—"),
        h("td", {}, env.provider || "—"),
        h("td", { class: "nowrap", title: isoTime(env.created_at) }, ago(env.created_at).replace(" ago", "")),
        h("td", { class: "nowrap", title: isoTime(env.last_activity_at) }, ago(env.last_activity_at)),
        h(
          "td",
          { class: "err" },
          env.last_error || "",
          env.last_reason ? h("div", { class: "muted" }, env.last_reason) : null,
        ),
        h(
          "td",
          { class: "row-actions" },
          h(
            "button",
            {
              type: "button",
              class: "small",
              disabled: env.desired === "suspended" || env.desired === "deleted",
              "aria-label": `Suspend ${env.id}`,
              onclick: () => act(env, "suspend"),
            },
            "Suspend",
          ),
          h(
            "button",
            {
              type: "button",
              class: "small",
              disabled: env.desired === "running" && env.observed === "running",
              "aria-label": `Resume ${env.id}`,
              onclick: () => act(env, "resume"),
            },
            "Resume",
          ),
          h(
            "button",
            {
              type: "button",
              class: "small",
              disabled: env.desired === "deleted",
              "aria-label": `View ${env.id} read-only`,
              onclick: () => observe(env),
            },
            "View",
          ),
          h(
            "button",
            {
              type: "button",
              class: "small danger-outline",
              disabled: env.desired === "deleted",
              "aria-label": `Reset ${env.id}`,
              onclick: () => confirmReset(env),
            },
            "Reset",
          ),
          h(
            "button",
            {
              type: "button",
              class: "small danger-outline",
              disabled: env.desired === "deleted",
              "aria-label": `Delete ${env.id}`,
              onclick: () => confirmDelete(env),
            },
            "Delete",
          ),
          h(
            "button",
            { type: "button", class: "small", "aria-label": `History of ${env.id}`, onclick: () => showHistory(env) },
            "History",
          ),
        ),
      );
    }),
  );
}

async function act(env, action) {
  $("status-line").textContent = `${action} ${env.id}…`;
  try {
    await api.post(`${base}/${encodeURIComponent(env.id)}/${action}`);
    showError(null);
  } catch (err) {
    showError(err);
  }
  await load();
}

function describe(env) {
  return `${env.id} (${env.learner || "?"}, ${env.course || "?"}/${env.lab || "?"})`;
}

/** Ask before an action that destroys the learner's work; `then` runs on confirmation. */
function confirmAction(heading, text, okLabel, then) {
  const dialog = $("confirm-dialog");
  $("confirm-heading").textContent = heading;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  dialog.onclose = () => {
    if (dialog.returnValue === "ok") then();
  };
  dialog.returnValue = "";
  dialog.showModal();
  $("confirm-cancel").focus();
}

function confirmDelete(env) {
  confirmAction(
    "Delete environment?",
    `Delete ${describe(env)}? Its machines and everything on them are removed.`,
    "Delete",
    () => act(env, "delete"),
  );
}

function confirmReset(env) {
  confirmAction(
    "Reset environment?",
    `Reset ${describe(env)}? Its machines are thrown away and a fresh lab starts; the learner opens it again from their course.`,
    "Reset",
    () => act(env, "reset"),
  );
}

/** Open the learner's lab read-only in a new tab (the tab is opened at the click, so no popup blocker). */
async function observe(env) {
  const tab = window.open("about:blank", "_blank");
  $("status-line").textContent = `opening ${env.id} read-only…`;
  try {
    const view = await api.post(`${base}/${encodeURIComponent(env.id)}/observe`);
    if (tab) {
      tab.opener = null;
      tab.location.replace(view.lab_url);
    } else {
      location.assign(view.lab_url);
    }
    showError(null);
  } catch (err) {
    if (tab) tab.close();
    showError(err);
  }
  await load();
}

async function showHistory(env) {
  const dialog = $("history-dialog");
  $("history-heading").textContent = `History of ${env.id}`;
  $("history-body").replaceChildren(h("p", { class: "muted" }, "Loading…"));
  dialog.showModal();
  try {
    const detail = await api.get(`${base}/${encodeURIComponent(env.id)}`);
    const events = [...(detail.history || [])].reverse();
    $("history-body").replaceChildren(
      h(
        "dl",
        { class: "kv" },
        ...[
          ["Learner", detail.learner],
          ["Course / lab", `${detail.course || "?"} / ${detail.lab || "?"}`],
          ["Desired / observed", `${detail.desired || "?"} / ${detail.observed || "?"}`],
          ["Provider", detail.provider],
          ["Created", isoTime(detail.created_at)],
          ["Last activity", isoTime(detail.last_activity_at)],
          ["Last error", detail.last_error],
        ]
          .filter(([, v]) => v)
          .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
      ),
      events.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              {},
              h("caption", { class: "visually-hidden" }, "Transitions, newest first"),
              h(
                "thead",
                {},
                h("tr", {}, ...["When", "Kind", "From", "To", "Reason", "Message"].map((t) => h("th", { scope: "col" }, t))),
              ),
              h(
                "tbody",
                {},
                ...events.map((e) =>
                  h(
                    "tr",
                    {},
                    h("td", { class: "nowrap", title: ago(e.at) }, isoTime(e.at)),
                    h("td", {}, e.kind || ""),
                    h("td", {}, e.from ? stateBadge(e.from) : ""),
                    h("td", {}, e.to ? stateBadge(e.to) : ""),
                    h("td", {}, e.reason || ""),
                    h("td", { class: "err" }, e.message || ""),
                  ),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, "No transition recorded."),
    );
  } catch (err) {
    $("history-body").replaceChildren(h("p", { class: "error-text", role: "alert" }, operatorText(err)));
  }
}

function start() {
  const query = new URLSearchParams(location.search);
  $("filter-course").value = query.get("course") || "";
  $("filter-state").value = query.get("state") || "";
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    keepFiltersInUrl();
    load();
  });
  $("filter-state").addEventListener("change", () => {
    keepFiltersInUrl();
    load();
  });
  $("refresh-button").addEventListener("click", load);
  $("history-close").addEventListener("click", () => $("history-dialog").close());
  $("confirm-cancel").addEventListener("click", () => $("confirm-dialog").close(""));
  $("confirm-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    $("confirm-dialog").close("ok");
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(api.storageKey);
    location.replace("/admin/login");
  });
  if (!api.token) {
    location.replace("/admin/login");
    return;
  }
  $("operator-name").textContent = tokenClaims(api.token).sub || "";
  scheduleTokenRefresh(tokenExpiry(api.token));
  load();
  startCourseSections(api);
  startMembersSection(api);
  refreshTimer = setInterval(() => {
    if (document.visibilityState === "visible" && !$("history-dialog").open) load();
  }, REFRESH_MS);
}

start();

function scheduleTokenRefresh(expiresAt) {
  clearTimeout(tokenTimer);
  const remaining = expiresAt ? expiresAt - Date.now() / 1000 : 300;
  const delay = Math.max(5, Math.min(remaining - 60, remaining * 0.7));
  tokenTimer = setTimeout(refreshToken, delay * 1000);
}

async function refreshToken() {
  try {
    const fresh = await api.post("/api/v1/admin/token");
    api.setToken(fresh.token);
    scheduleTokenRefresh(epoch(fresh.expires_at) ?? tokenExpiry(fresh.token));
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) showError(err);
    else tokenTimer = setTimeout(refreshToken, 15_000);
  }
}
