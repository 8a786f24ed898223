// The learner's lab page: /lab/{env}?node=N#token=T.
// Opens (launches or resumes) the lab, shows its progress, then a terminal per node, checks and reset.
// `node` names the machine shown first. A read-only token (course staff watching a learner, or a unit set to
// read-only) watches the lab: no resume, check or reset, and the terminals take no input (the server drops
// it too; the page only says so).
// `?embedded=1` (the LMS unit's iframe): the unit owns checking, grading and the title, so the page shows no
// Check button, no progress card and no title of its own, never loads another page into the frame, and
// takes the keyboard focus only once the learner has acted in it.
import { Api, ApiError, epoch, h, tokenClaims, tokenExpiry } from "./api.js";
import { TerminalSession } from "./terminal.js";
import { DesktopTabs } from "./desktop_tabs.js";
import { STATE_TEXT } from "./states.js";
import { IdleWatch } from "./idle.js";
import { UsageMeter, blockedNotice } from "./usage.js";

const POLL_FIRST_MS = 100; // a resume takes tens of milliseconds: look again soon, then back off
const POLL_MS = 500;
const POLL_MAX_MS = 5000;
const POLL_IN_LINE_MS = 2000; // waiting in line (docs/queue.md): each poll also keeps the place

const $ = (id) => document.getElementById(id);

const envId = decodeURIComponent(location.pathname.replace(/^\/lab\//, "").replace(/\/+$/, ""));
const base = `/api/v1/environments/${encodeURIComponent(envId)}`;
const api = new Api(`stacklab.token.${envId}`);
const params = new URLSearchParams(location.search);
const firstNode = params.get("node");
const embedded = params.get("embedded") === "1";
// The course's display name as the unit passes it (`course_name`): shown as text only, never as markup.
const givenCourseName = (params.get("course_name") || "").replace(/[\u0000-\u001f\u007f]/g, "").trim().slice(0, 200);
const framed = window.self !== window.top;
// Waits between tries while the service does not answer (5xx, network): then a Retry button.
const UNREACHABLE_BACKOFF_MS = [500, 1000, 2000, 4000, 5000];
const readOnly = Boolean(api.token && tokenClaims(api.token).read_only === true);

const terminals = new Map(); // node -> {session, host, tab}
// Idle warning and presence (docs/idle.md): not for a read-only watcher, whose page never moves the lab.
const idle = readOnly ? null : new IdleWatch({ api, base, before: $("conn-banner") });
const desktops = new DesktopTabs({ envId, api, readOnly, onNotRunning: () => notRunning(), onAuthFailed: () => refreshToken() });
const usageMeter = new UsageMeter($("lab-meta"));
let activeNode = null;
let view = "progress"; // progress | terminal | fatal
let pollGeneration = 0;
let lastStatus = null;
let progressStarted = Date.now();
let refreshTimer = null;
let failures = 0; // service faults in a row while opening the lab
let learnerActed = !embedded; // embedded: no focus is taken before the learner clicks or types here

// ---- progress view -------------------------------------------------------------------------------------

const LAUNCH_STEPS = [
  { key: "creating", label: "Creating your machines" },
  { key: "booting", label: "Starting them up" },
  { key: "ready", label: "Ready" },
];
const RESUME_STEPS = [
  { key: "suspended", label: "Paused while you were away" },
  { key: "resuming", label: "Waking your lab up" },
  { key: "ready", label: "Ready" },
];
const STEP_INDEX = {
  queued: [LAUNCH_STEPS, 0],
  creating: [LAUNCH_STEPS, 0],
  booting: [LAUNCH_STEPS, 1],
  suspended: [RESUME_STEPS, 0],
  resuming: [RESUME_STEPS, 1],
};

function showView(name) {
  view = name;
  $("progress-view").hidden = name !== "progress";
  $("terminal-view").hidden = name !== "terminal";
  $("check-button").disabled = readOnly || name !== "terminal";
  document.body.dataset.view = name;
}

function renderLab(status) {
  if (!status) return;
  lastStatus = status;
  usageMeter.update(status.usage);
  const title = status.title || status.lab || "Your lab";
  $("lab-title").textContent = title;
  document.title = `${title} — stacklab`;
  $("lab-description").textContent = (status.description || "").trim();
  $("lab-meta").textContent = embedded ? courseName(status) : [courseName(status), status.lab].filter(Boolean).join(" · ");
}

/** The course's display name (from the service, else from the unit); inside the course the raw id means nothing. */
function courseName(status) {
  if (status.course_name || givenCourseName) return status.course_name || givenCourseName;
  return embedded ? "" : status.course;
}

/** Focus, unless the page is embedded and the learner has not acted in it yet (no focus stolen on load). */
function focusIfAllowed(el) {
  if (el && learnerActed) el.focus();
}

/** "reference: <request id>" in small text, so staff can find the log line of a failed call. */
function reference(err) {
  if (!(err instanceof ApiError) || !err.requestId) return null;
  return h("span", { class: "reference" }, `reference: ${err.requestId}`);
}

function renderProgress(status, note, err = null) {
  renderLab(status);
  const progress = status ? status.progress : "queued";
  const box = $("progress-view");
  box.dataset.progress = progress;
  const seconds = Math.round((Date.now() - progressStarted) / 1000);

  if (progress === "failed") {
    box.replaceChildren(
      h(
        "div",
        { class: "notice notice-error", role: "alert" },
        h("h2", {}, "Your lab could not start"),
        h("p", {}, status.message || "Something went wrong while preparing your lab."),
        h("p", {}, "Try again; if it fails again, tell your course staff."),
        h("button", { class: "primary", type: "button", id: "retry-button", onclick: () => openLab() }, "Retry"),
      ),
    );
    focusIfAllowed($("retry-button"));
    return;
  }
  if (progress === "deleted") {
    box.replaceChildren(
      h(
        "div",
        { class: "notice", role: "status" },
        h("h2", {}, "This lab was removed"),
        h("p", {}, status.message || "It had not been used for a long time. You can start a fresh one."),
        h(
          "button",
          { class: "primary", type: "button", id: "retry-button", onclick: () => openLab() },
          "Start a fresh lab",
        ),
      ),
    );
    return;
  }

  if (status && status.queue_position != null) {
    renderInLine(box, status);
    return;
  }

  const [steps, current] = STEP_INDEX[progress] || (progress === "ready" ? [LAUNCH_STEPS, 2] : [LAUNCH_STEPS, 0]);
  const heading = steps === RESUME_STEPS ? "Bringing your lab back" : "Preparing your lab";
  const items = steps.map((step, i) => {
    const state = i < current ? "done" : i === current ? "current" : "todo";
    const label = progress === "queued" && i === 0 ? "Waiting for a free machine" : step.label;
    return h(
      "li",
      { class: `step step-${state}`, "data-step": step.key, "aria-current": state === "current" ? "step" : null },
      h("span", { class: "step-icon", "aria-hidden": "true" }),
      h("span", { class: "step-label" }, label),
      h("span", { class: "visually-hidden" }, state === "done" ? " (done)" : state === "current" ? " (in progress)" : ""),
    );
  });
  box.replaceChildren(
    h(
      "div",
      { class: "progress-card" },
      h("h2", {}, heading),
      h("ol", { class: "steps", "aria-label": "Progress" }, items),
      h(
        "p",
        { class: "progress-note", role: "status" },
        note || (steps === RESUME_STEPS ? "Everything is as you left it." : `This usually takes under a minute (${seconds} s).`),
      ),
      reference(err),
    ),
  );
}

// ---- waiting in line (every machine busy) --------------------------------------------------------------

let wasInLine = false;

/** "about 2 min" from the service's estimate (seconds), or nothing when it has none. */
function waitText(seconds) {
  if (typeof seconds !== "number") return "";
  return seconds < 60 ? "less than a minute" : `about ${Math.round(seconds / 60)} min`;
}

function renderInLine(box, status) {
  wasInLine = true;
  box.dataset.progress = "in-line";
  box.dataset.queuePosition = String(status.queue_position);
  const wait = waitText(status.queue_estimate_s);
  const place = `You are number ${status.queue_position} in line${wait ? `, ${wait}` : ""}.`;
  box.replaceChildren(
    h(
      "div",
      { class: "progress-card in-line" },
      h("h2", {}, "All lab machines are busy"),
      h("p", { class: "queue-place", id: "queue-place", role: "status" }, place),
      h(
        "p",
        { class: "progress-note" },
        readOnly
          ? "The learner's lab starts when its turn comes."
          : "Your lab starts as soon as a machine is free, in the order learners asked. Keep this page open: leaving it gives up your place.",
      ),
      readOnly ? null : h("button", { type: "button", id: "leave-queue-button", onclick: () => leaveLine() }, "Leave the line"),
    ),
  );
}

async function leaveLine() {
  pollGeneration += 1;
  try {
    showLeftLine(await api.post(`${base}/leave-queue`));
  } catch (err) {
    if (!fatal(err)) openLab(); // no longer in line (its turn came): carry on opening
  }
}

/** Out of line (the learner left, or the page stopped asking): nothing runs until they ask again. */
function showLeftLine(status) {
  pollGeneration += 1;
  wasInLine = false;
  if (status) renderLab(status);
  const box = $("progress-view");
  box.dataset.progress = "left-line";
  box.replaceChildren(
    h(
      "div",
      { class: "notice", role: "status" },
      h("h2", {}, "You left the line"),
      h("p", {}, "Your lab was not started. Join the line again when you are ready: you will be at its end."),
      h("button", { class: "primary", type: "button", id: "rejoin-button", onclick: () => openLab() }, "Join the line again"),
    ),
  );
  focusIfAllowed($("rejoin-button"));
}

/** Launch or resume, then poll until ready. */
async function openLab() {
  idle?.stop();
  showView("progress");
  disconnectAll();
  progressStarted = Date.now();
  renderProgress(lastStatus && { ...lastStatus, progress: lastStatus.ready ? "resuming" : lastStatus.progress === "failed" ? "queued" : lastStatus.progress });
  const generation = ++pollGeneration;
  let status = null;
  try {
    // Watching only: whoever gave the read-only token has asked for the lab to run.
    status = readOnly ? await api.get(base) : await api.post(`${base}/resume`);
  } catch (err) {
    if (stopsOpening(err)) return;
    renderProgress(lastStatus, err.message, err);
  }
  await pollUntilReady(generation, status);
}

async function pollUntilReady(generation, first) {
  let status = first;
  let delay = POLL_FIRST_MS;
  let next = POLL_FIRST_MS;
  for (;;) {
    if (generation !== pollGeneration) return;
    if (status) {
      failures = 0;
      renderProgress(status);
      if (status.ready) {
        showTerminals(status);
        return;
      }
      if (status.usage?.blocked) {
        showBlocked(status);
        return;
      }
      if (status.progress === "failed" || status.progress === "deleted") return;
      if (wasInLine && status.queue_position == null && status.desired !== "running" && !readOnly) {
        showLeftLine(status);
        return;
      }
      delay = status.queue_position != null ? POLL_IN_LINE_MS : next;
      next = Math.min(Math.round(next * 1.5), POLL_MS);
    }
    await sleep(delay);
    if (generation !== pollGeneration) return;
    try {
      status = await api.get(base);
    } catch (err) {
      if (stopsOpening(err)) return;
      renderProgress(lastStatus, err.message, err);
      status = null;
      delay = err.transient ? UNREACHABLE_BACKOFF_MS[failures - 1] : Math.min(delay * 2, POLL_MAX_MS);
    }
  }
}

/** Whether a failed call ends the opening: the token or the lab is gone, or the service stays silent. */
function stopsOpening(err) {
  if (fatal(err)) return true;
  if (!(err instanceof ApiError) || !err.transient) return false;
  failures += 1;
  if (failures <= UNREACHABLE_BACKOFF_MS.length) return false;
  showUnreachable(err);
  return true;
}

function fatal(err) {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403 || err.status === 404)) {
    showFatal(err.message, err);
    return true;
  }
  return false;
}

/** The service stayed silent through every try: say so, and let the learner try again. */
function showUnreachable(err) {
  idle?.stop();
  pollGeneration += 1;
  disconnectAll();
  showView("progress");
  $("progress-view").dataset.progress = "unreachable";
  $("progress-view").replaceChildren(
    h(
      "div",
      { class: "notice notice-error", role: "alert" },
      h("h2", {}, "The lab service is not answering"),
      h("p", {}, "We tried several times. Try again in a minute; if it keeps happening, tell your course staff."),
      h("button", { class: "primary", type: "button", id: "retry-button", onclick: () => retryOpening() }, "Retry"),
      reference(err),
    ),
  );
  focusIfAllowed($("retry-button"));
}

function retryOpening() {
  failures = 0;
  openLab();
}

function showPaused() {
  if (view !== "terminal") return;
  idle?.stop();
  pollGeneration += 1;
  disconnectAll();
  showView("progress");
  const box = $("progress-view");
  box.dataset.progress = "paused";
  const resume = readOnly
    ? h("p", {}, "You are watching: the learner's next visit wakes it up.")
    : h("button", { class: "primary", type: "button", id: "resume-button", onclick: () => openLab() }, "Resume my lab");
  box.replaceChildren(
    h(
      "div",
      { class: "notice", role: "status" },
      h("h2", {}, "Your lab is paused"),
      h("p", {}, "Everything is kept as you left it; it uses no machines while paused."),
      resume,
    ),
  );
  if (!readOnly) focusIfAllowed($("resume-button"));
  if (lastStatus?.usage) showBlockedIfOver();
}

const BLOCKED_LOOKS = 30;

/** A lab paused by its usage limit shows the limit's notice, not a Resume button that would be refused.
 * The terminal closes as the lab freezes, a moment before the service records it paused: while the status
 * still says it runs past its limit, look again (bounded) until it says paused. */
async function showBlockedIfOver() {
  const generation = pollGeneration;
  for (let look = 0; look < BLOCKED_LOOKS; look += 1) {
    let status;
    try {
      status = await api.get(base);
    } catch {
      return; // the paused view stays: its Resume button says the rest
    }
    if (generation !== pollGeneration) return;
    renderLab(status);
    if (status.usage?.blocked && !status.ready) {
      showBlocked(status);
      return;
    }
    if (!status.usage?.blocked || !status.ready) return; // paused for another reason
    await sleep(1000);
  }
}

/** Past a `block` usage limit: the limit's notice in place of the lab, and the last check results (read-only). */
function showBlocked(status) {
  idle?.stop();
  pollGeneration += 1;
  disconnectAll();
  showView("progress");
  $("progress-view").dataset.progress = "usage-blocked";
  $("progress-view").replaceChildren(blockedNotice(status, readOnly));
  $("checks-card").hidden = false; // the unit's frame too: checks are all there is to see
  loadChecks();
}

function showFatal(message, err = null) {
  idle?.stop();
  pollGeneration += 1;
  disconnectAll();
  showView("progress");
  view = "fatal";
  $("reset-button").disabled = true;
  $("progress-view").replaceChildren(
    h("div", { class: "notice notice-error", role: "alert" }, h("h2", {}, "Cannot open this lab"), h("p", {}, message), reference(err)),
  );
}

// ---- terminals ---------------------------------------------------------------------------------------------

function showTerminals(status) {
  const nodes = status.nodes && status.nodes.length ? status.nodes : [];
  if (!nodes.length) {
    renderProgress(status, "Your lab is ready, but it has no machine you may open.");
    return;
  }
  showView("terminal");
  const tabs = $("node-tabs");
  // Drop terminals of nodes that are gone (after a reset to a different lab version).
  for (const [node, t] of terminals) {
    if (!nodes.includes(node)) {
      t.session.dispose();
      t.host.remove();
      terminals.delete(node);
    }
  }
  tabs.replaceChildren(
    ...nodes.map((node) =>
      h(
        "button",
        {
          type: "button",
          role: "tab",
          id: `tab-${node}`,
          class: "node-tab",
          "data-node": node,
          "aria-controls": `term-${node}`,
          onclick: () => selectNode(node),
          onkeydown: (ev) => tabKeys(ev, nodes, node),
        },
        node,
      ),
    ),
  );
  $("node-bar").hidden = nodes.length < 2;
  desktops.render(nodes, tabs, $("node-bar")); // a desktop tab beside each node that has one
  if (!activeNode || !nodes.includes(activeNode)) activeNode = nodes.includes(firstNode) ? firstNode : nodes[0];
  // Re-attach the shells opened before (same session, same offset), then show the active one.
  for (const [node, t] of terminals) if (node !== activeNode) t.session.connect();
  selectNode(activeNode, learnerActed);
  idle?.start(status);
}

function tabKeys(ev, nodes, node) {
  const i = nodes.indexOf(node);
  let next = null;
  if (ev.key === "ArrowRight") next = nodes[(i + 1) % nodes.length];
  if (ev.key === "ArrowLeft") next = nodes[(i - 1 + nodes.length) % nodes.length];
  if (ev.key === "Home") next = nodes[0];
  if (ev.key === "End") next = nodes[nodes.length - 1];
  if (next) {
    ev.preventDefault();
    selectNode(next, false);
    $(`tab-${next}`).focus();
  }
}

function selectNode(node, focusTerminal = true) {
  activeNode = node;
  for (const tab of document.querySelectorAll(".node-tab")) {
    const selected = tab.dataset.node === node && !tab.dataset.kind;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
  }
  let t = terminals.get(node);
  if (!t) {
    const host = h("div", {
      class: "term-host",
      id: `term-${node}`,
      role: "tabpanel",
      "aria-label": `Terminal on ${node}`,
    });
    $("terminals").append(host);
    const session = new TerminalSession({
      envId,
      node,
      container: host,
      readOnly,
      getToken: () => api.token,
      onState: (state, detail) => onTerminalState(node, state, detail),
      onNotRunning: () => notRunning(),
      onAuthFailed: () => refreshToken(),
      onTrouble: (attempt) => checkStillRunning(attempt),
      onEnded: (reason) => shellEnded(node, reason),
      onLeave: () => leaveTerminal(),
    });
    t = { session, host };
    terminals.set(node, t);
  }
  desktops.hide();
  for (const [other, o] of terminals) o.host.hidden = other !== node;
  t.session.scheduleFit();
  t.session.connect();
  onTerminalState(node, t.session.state, null);
  if (focusTerminal) t.session.focus();
}


function onTerminalState(node, state, detail) {
  if (node !== activeNode || terminals.get(node)?.host.hidden) return; // hidden: a desktop tab is shown
  const badge = $("conn-state");
  badge.textContent = STATE_TEXT[state] ?? state;
  badge.dataset.state = state;
  const banner = $("conn-banner");
  if (state === "reconnecting" || state === "ended" || state === "failed" || state === "taken") {
    const text = {
      reconnecting: "Connection lost — reconnecting…",
      ended: `The shell on ${node} ended${detail ? ` (${detail})` : ""}.`,
      taken: `This shell on ${node} is now open in another tab or window.`,
      failed: detail || "The terminal was disconnected.",
    }[state];
    const children = [h("span", { class: state === "reconnecting" ? "spinner" : "", "aria-hidden": "true" }), h("span", {}, text)];
    if (state === "ended") {
      children.push(h("button", { type: "button", class: "primary", onclick: () => terminals.get(node).session.restart() }, "Start a new shell"));
    } else if (state === "taken") {
      children.push(h("button", { type: "button", class: "primary", onclick: () => terminals.get(node).session.connect() }, "Use it here"));
    } else if (state === "reconnecting") {
      children.push(h("button", { type: "button", onclick: () => terminals.get(node).session.connect() }, "Retry now"));
    }
    banner.replaceChildren(...children);
    banner.dataset.state = state;
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
}

function disconnectAll() {
  for (const t of terminals.values()) t.session.disconnect();
  desktops.disconnect();
}

function notRunning() {
  if (view !== "terminal") return;
  openLab();
}

async function shellEnded(node, reason) {
  if (/another tab/i.test(reason)) return;
  // Paused by someone else (course staff, the idle policy): stay paused until the learner asks, rather
  // than undo the pause at once. Deleted: this page's token is revoked; the course opens a fresh lab.
  if (/was paused/i.test(reason)) return showPaused();
  if (/was deleted/i.test(reason)) return showFatal("Your lab was deleted. Open it again from your course to get a fresh one.");
  // Reset (or stopped otherwise): open the lab again; the same session id gets a new shell once it is back.
  try {
    const status = await api.get(base);
    if (!status.ready && view === "terminal") openLab();
  } catch (err) {
    fatal(err);
  }
}

async function checkStillRunning(attempt) {
  if (attempt < 3 || view !== "terminal") return;
  try {
    const status = await api.get(base);
    if (!status.ready && view === "terminal") openLab();
  } catch (err) {
    fatal(err);
  }
}

// ---- checks ---------------------------------------------------------------------------------------------

function fmt(n) {
  if (typeof n !== "number") return "–";
  return String(Math.round(n * 100) / 100);
}

function renderChecks(report) {
  const score = $("score");
  const list = $("check-results");
  if (!report || !report.results) {
    score.textContent = "Not checked yet";
    score.dataset.score = "";
    list.replaceChildren();
    if (report && typeof report.counted_score === "number") {
      score.textContent = `Not checked yet (counted score: ${fmt(report.counted_score)})`;
    }
    return;
  }
  const text = `${fmt(report.score)}/${fmt(report.max_score)}`;
  score.replaceChildren(h("span", { class: "score-label" }, "Score "), h("strong", { class: "score-value", id: "score-value" }, text));
  if (typeof report.counted_score === "number" && report.counted_score !== report.score) {
    score.append(h("span", { class: "score-counted" }, ` · counted: ${fmt(report.counted_score)}`));
  }
  score.dataset.score = text;
  score.classList.toggle("score-full", report.max_score > 0 && report.score >= report.max_score);
  list.replaceChildren(
    ...report.results.map((r) =>
      h(
        "li",
        { class: `check ${r.passed ? "check-pass" : "check-fail"}`, "data-check": r.name },
        h("span", { class: "check-icon", "aria-hidden": "true" }, r.passed ? "✓" : "✗"),
        h(
          "div",
          { class: "check-body" },
          h(
            "div",
            { class: "check-head" },
            h("span", { class: "check-name" }, r.name),
            h("span", { class: "visually-hidden" }, r.passed ? ": passed" : ": not yet"),
            h("span", { class: "check-weight" }, `${fmt(r.weight)} pt${r.weight === 1 ? "" : "s"}`),
          ),
          !r.passed && r.hint ? h("p", { class: "check-hint" }, r.hint) : null,
          r.output && r.output.trim()
            ? h("details", {}, h("summary", {}, `Output${r.node ? ` on ${r.node}` : ""}`), h("pre", {}, r.output))
            : null,
        ),
      ),
    ),
  );
}

async function runChecks() {
  const button = $("check-button");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  const label = button.textContent;
  button.textContent = "Checking…";
  $("check-error").hidden = true;
  try {
    renderChecks(await api.post(`${base}/checks`));
  } catch (err) {
    if (!fatal(err)) {
      const text = err.status === 409 ? "Your lab is not running right now (still starting or paused): check again once the terminal is connected." : err.message;
      $("check-error").replaceChildren(text, " ", reference(err) || "");
      $("check-error").hidden = false;
    }
  } finally {
    button.textContent = label;
    button.removeAttribute("aria-busy");
    button.disabled = view !== "terminal";
  }
}

async function loadChecks() {
  try {
    const data = await api.get(`${base}/checks`);
    if (data && "latest" in data) {
      // {latest: report | null, counted_score}
      const counted = data.counted_score ?? undefined;
      renderChecks(data.latest ? { ...data.latest, counted_score: counted ?? data.latest.counted_score } : { counted_score: counted });
    } else {
      renderChecks(data);
    }
  } catch {
    renderChecks(null);
  }
}

// ---- reset --------------------------------------------------------------------------------------------------

function askReset() {
  const dialog = $("reset-dialog");
  $("reset-error").hidden = true;
  dialog.showModal();
  $("reset-cancel").focus();
}

async function doReset(ev) {
  ev.preventDefault();
  const confirm = $("reset-confirm");
  confirm.disabled = true;
  try {
    const status = await api.post(`${base}/reset`);
    // A reset withdraws every earlier token of the lab, ours too: carry on with the one it hands back.
    if (status.token) {
      api.setToken(status.token);
      scheduleRefresh(epoch(status.expires_at) ?? tokenExpiry(status.token));
    }
    $("reset-dialog").close();
    for (const t of terminals.values()) {
      t.session.forget();
      t.session.dispose();
      t.host.remove();
    }
    terminals.clear();
    activeNode = null;
    showView("progress");
    progressStarted = Date.now();
    const generation = ++pollGeneration;
    pollUntilReady(generation, status);
  } catch (err) {
    $("reset-error").replaceChildren(err.message, " ", reference(err) || "");
    $("reset-error").hidden = false;
  } finally {
    confirm.disabled = false;
  }
}

// ---- token refresh ------------------------------------------------------------------------------------

function scheduleRefresh(expiresAt) {
  clearTimeout(refreshTimer);
  const remaining = expiresAt ? expiresAt - Date.now() / 1000 : 300;
  const delay = Math.max(5, Math.min(remaining - 60, remaining * 0.7));
  refreshTimer = setTimeout(() => refreshToken(), delay * 1000);
}

let refreshing = null;
function refreshToken() {
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const fresh = await api.post(`${base}/token`);
        api.setToken(fresh.token);
        scheduleRefresh(epoch(fresh.expires_at) ?? tokenExpiry(fresh.token));
        return true;
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
          showFatal(err.message, err);
          return false;
        }
        refreshTimer = setTimeout(() => refreshToken(), 15_000);
        return false;
      } finally {
        refreshing = null;
      }
    })();
  }
  return refreshing;
}

// ---- start ---------------------------------------------------------------------------------------------------

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function activeSession() {
  const t = terminals.get(activeNode);
  return t ? t.session : null;
}

// A handle for tests and for the curious: the active terminal and its text.
window.stacklabTerm = {
  get term() {
    return activeSession()?.term ?? null;
  },
  get node() {
    return activeNode;
  },
  get state() {
    return activeSession()?.state ?? "idle";
  },
  get view() {
    return view;
  },
  get readOnly() {
    return readOnly;
  },
  get embedded() {
    return embedded;
  },
  text(node) {
    const t = terminals.get(node ?? activeNode);
    return t ? t.session.text() : "";
  },
};

/** A read-only page: say so, and leave out what it may not do. */
function showReadOnly() {
  document.body.dataset.readOnly = "true";
  $("check-button").hidden = true;
  $("reset-button").hidden = true;
  $("lab-meta").after(
    h(
      "div",
      { class: "read-only-badge", id: "read-only-badge", role: "note" },
      "Read-only: you can watch this lab, not type in it.",
    ),
  );
}

/** Inside the course unit: the unit owns the check, the score and the title (docs/web-protocol.md). */
function setUpEmbedded() {
  document.body.dataset.embedded = "true";
  $("check-button").hidden = true;
  $("checks-card").hidden = true;
  $("tip-check").hidden = true;
  $("lab-title").classList.add("visually-hidden");
  const brand = document.querySelector(".brand");
  brand.replaceWith(h("span", { class: "brand" }, "stacklab"));
  for (const type of ["pointerdown", "keydown"]) {
    document.addEventListener(type, () => (learnerActed = true), { capture: true, once: true });
  }
}

/** Framed but not embedded: a link to another page of the service opens outside the frame. */
function keepLinksOutOfFrame() {
  for (const link of document.querySelectorAll("a[href]")) {
    link.target = "_blank";
    link.rel = "noopener";
  }
}

/** Ctrl+] (or Esc then Tab) in the terminal: focus goes to the bar above it, out of the keyboard's reach of the shell. */
function leaveTerminal() {
  const tab = document.querySelector(".node-tab[aria-selected=true]");
  (tab && !$("node-bar").hidden ? tab : $("fullscreen-button")).focus();
}

function toggleFullscreen() {
  if (document.fullscreenElement) {
    document.exitFullscreen().catch((exc) => console.warn("stacklab: leaving full screen failed:", exc));
  } else {
    $("terminal-view").requestFullscreen().catch((exc) => console.warn("stacklab: full screen refused:", exc));
  }
}

function onFullscreenChange() {
  const on = document.fullscreenElement === $("terminal-view");
  const button = $("fullscreen-button");
  button.textContent = on ? "Exit full screen" : "Full screen";
  button.setAttribute("aria-pressed", String(on));
  activeSession()?.scheduleFit();
}

/** xterm.js's screen-reader mode (its output as an accessible live region), for every terminal. */
function toggleScreenReader() {
  const button = $("reader-button");
  const on = button.getAttribute("aria-pressed") !== "true";
  button.setAttribute("aria-pressed", String(on));
  TerminalSession.screenReaderMode = on;
  for (const t of terminals.values()) t.session.term.options.screenReaderMode = on;
}

function setUpTerminalBar() {
  $("fullscreen-button").hidden = !document.fullscreenEnabled;
  $("fullscreen-button").addEventListener("click", toggleFullscreen);
  document.addEventListener("fullscreenchange", onFullscreenChange);
  $("reader-button").addEventListener("click", toggleScreenReader);
}

function start() {
  if (embedded) setUpEmbedded();
  else if (framed) keepLinksOutOfFrame();
  if (readOnly) showReadOnly();
  setUpTerminalBar();
  $("check-button").addEventListener("click", runChecks);
  $("reset-button").addEventListener("click", askReset);
  $("reset-form").addEventListener("submit", doReset);
  $("reset-cancel").addEventListener("click", () => $("reset-dialog").close());
  if (!envId) {
    showFatal("No lab in this address.");
    return;
  }
  if (!api.token) {
    showFatal("This page needs an access link. Open the lab from your course (or the demo page).");
    return;
  }
  scheduleRefresh(tokenExpiry(api.token));
  idle?.listen();
  if (!embedded) loadChecks();
  openLab();
}

start();
