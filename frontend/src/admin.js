// The operator view: /admin#token=T (an admin token, given after the password login).
import { Api, ApiError, ago, h, isoTime } from "./api.js";

const REFRESH_MS = 10_000;
const base = "/api/v1/admin/environments";
const api = new Api("stacklab.admin.token");
const $ = (id) => document.getElementById(id);

let rows = [];
let refreshTimer = null;
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
  box.replaceChildren(err.message);
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    box.replaceChildren("Your operator session has expired. ", h("a", { href: "/admin/login" }, "Sign in again"), ".");
    clearInterval(refreshTimer);
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
  } catch (err) {
    showError(err);
    $("status-line").textContent = "";
  } finally {
    loading = false;
  }
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

function confirmDelete(env) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent =
    `Delete ${env.id} (${env.learner || "?"}, ${env.course || "?"}/${env.lab || "?"})? Its machines and everything on them are removed.`;
  dialog.onclose = () => {
    if (dialog.returnValue === "delete") act(env, "delete");
  };
  dialog.returnValue = "";
  dialog.showModal();
  $("confirm-cancel").focus();
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
    $("history-body").replaceChildren(h("p", { class: "error-text", role: "alert" }, err.message));
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
    $("confirm-dialog").close("delete");
  });
  if (!api.token) {
    location.replace("/admin/login");
    return;
  }
  load();
  refreshTimer = setInterval(() => {
    if (document.visibilityState === "visible" && !$("history-dialog").open) load();
  }, REFRESH_MS);
}

start();
