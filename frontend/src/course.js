// The course view for course staff: /course?course=C&lab=L#token=T, opened from the XBlock's staff panel
// (the LMS asks the service for a staff token bound to the course). Lists the class (class_table.js), opens
// a learner's lab read-only, refreshes itself, and renews its token before it expires.
import { Api, ApiError, epoch, operatorText, tokenClaims, tokenExpiry } from "./api.js";
import { classRows, openReadOnly } from "./class_table.js";

const REFRESH_MS = 15_000;
const NAMES_KEY = "stacklab.course.names";
const api = new Api("stacklab.course.token");
const names = takeNames();
const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const course = query.get("course") || tokenClaims(api.token).course || "";
let lab = query.get("lab") || "";
let refreshTimer = null;
let tokenTimer = null;

/** Learners' names from the LMS (`#names=` JSON, put there by the XBlock): kept in sessionStorage, taken
 * out of the URL like the token. They never reach the service. */
function takeNames() {
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  const given = fragment.get("names");
  if (given) {
    sessionStorage.setItem(NAMES_KEY, given);
    fragment.delete("names");
    const rest = fragment.toString();
    history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  try {
    const parsed = JSON.parse(sessionStorage.getItem(NAMES_KEY) || "{}");
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

function base() {
  return `/api/v1/courses/${encodeURIComponent(course)}`;
}

function showError(err) {
  const box = $("course-error");
  if (!err) {
    box.hidden = true;
    return;
  }
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    box.textContent = "This course view has expired. Open it again from the staff panel of a lab unit in your course.";
    clearInterval(refreshTimer);
    clearTimeout(tokenTimer);
  } else {
    box.textContent = operatorText(err);
  }
  box.hidden = false;
}

async function load() {
  try {
    const members = await api.get(`${base()}/class${lab ? `?lab=${encodeURIComponent(lab)}` : ""}`);
    $("class-rows").replaceChildren(...classRows(members, watch, names));
    const labs = [...new Set(members.map((m) => m.lab))];
    $("status-line").textContent = `${members.length} learner${members.length === 1 ? "" : "s"}${labs.length === 1 ? ` in ${labs[0]}` : ""} · updated ${new Date().toLocaleTimeString()}`;
    showError(null);
  } catch (err) {
    showError(err);
  }
}

function watch(member) {
  $("status-line").textContent = `opening ${names[member.learner] || member.learner}'s lab read-only…`;
  openReadOnly(() => api.post(`${base()}/class/${encodeURIComponent(member.learner)}/watch`, { lab: member.lab }))
    .then(() => showError(null), showError)
    .finally(load);
}

function scheduleTokenRefresh(expiresAt) {
  clearTimeout(tokenTimer);
  const remaining = expiresAt ? expiresAt - Date.now() / 1000 : 300;
  tokenTimer = setTimeout(refreshToken, Math.max(5, Math.min(remaining - 60, remaining * 0.7)) * 1000);
}

async function refreshToken() {
  try {
    const fresh = await api.post(`${base()}/staff-token`);
    api.setToken(fresh.token);
    scheduleTokenRefresh(epoch(fresh.expires_at) ?? tokenExpiry(fresh.token));
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) showError(err);
    else tokenTimer = setTimeout(refreshToken, 15_000);
  }
}

function start() {
  $("course-name").textContent = course || "(no course)";
  $("lab-name").textContent = lab ? `lab ${lab}` : "every lab";
  if (!api.token || !course) {
    showError(new ApiError(401, ""));
    return;
  }
  $("refresh-button").addEventListener("click", load);
  scheduleTokenRefresh(tokenExpiry(api.token));
  load();
  refreshTimer = setInterval(() => {
    if (document.visibilityState === "visible") load();
  }, REFRESH_MS);
}

start();
