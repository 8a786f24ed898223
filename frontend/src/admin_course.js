// The operator page's course sections: a course's class (class_table.js, with the read-only watch of the
// operator's own observe) and the usage and cost report with its chart (usage_chart.js).
import { h, operatorText } from "./api.js";
import { classRows, openReadOnly } from "./class_table.js";
import { chartSummary, drawChart, usageRows } from "./usage_chart.js";

const $ = (id) => document.getElementById(id);

function inputs(prefix) {
  const value = (name) => ($(`${prefix}-${name}`) ? $(`${prefix}-${name}`).value.trim() : "");
  return { course: value("course"), lab: value("lab"), since: value("since"), until: value("until") };
}

async function loadClass(api) {
  const { course, lab } = inputs("class");
  const status = $("class-status");
  if (!course) {
    status.textContent = "Name a course to see its class.";
    return;
  }
  status.textContent = "Loading…";
  try {
    const members = await api.get(`/api/v1/courses/${encodeURIComponent(course)}/class${lab ? `?lab=${encodeURIComponent(lab)}` : ""}`);
    $("admin-class-rows").replaceChildren(...classRows(members, (m) => watch(api, m)));
    status.textContent = `${members.length} learner${members.length === 1 ? "" : "s"} in ${course}`;
  } catch (err) {
    $("admin-class-rows").replaceChildren();
    status.textContent = operatorText(err);
  }
}

function watch(api, member) {
  openReadOnly(() => api.post(`/api/v1/admin/environments/${encodeURIComponent(member.id)}/observe`)).catch((err) => {
    $("class-status").textContent = operatorText(err);
  });
}

async function loadUsage(api) {
  const { course, lab, since, until } = inputs("usage");
  const params = new URLSearchParams();
  if (course) params.set("course", course);
  if (lab) params.set("lab", lab);
  if (since) params.set("since", since);
  if (until) params.set("until", until);
  const status = $("usage-status");
  status.textContent = "Loading…";
  try {
    const report = await api.get(`/api/v1/admin/usage${params.toString() ? `?${params}` : ""}`);
    const box = $("usage-chart");
    drawChart(box, report.series);
    box.setAttribute("aria-label", `Usage over time${course ? ` in ${course}` : ""}. ${chartSummary(report.series)}`);
    $("usage-rows").replaceChildren(...usageRows(report));
    status.textContent = `${report.rows.length} row${report.rows.length === 1 ? "" : "s"}, ${new Date(report.since * 1000).toISOString().slice(0, 10)} to ${new Date(report.until * 1000).toISOString().slice(0, 10)}`;
  } catch (err) {
    $("usage-rows").replaceChildren(h("tr", {}, h("td", { colspan: "9", class: "error-text" }, operatorText(err))));
    status.textContent = "";
  }
}

/** Wire the class and usage forms (the course filter of the environments list fills them in at first). */
export function startCourseSections(api) {
  const query = new URLSearchParams(location.search);
  if (query.get("course")) {
    $("class-course").value = query.get("course");
    $("usage-course").value = query.get("course");
  }
  $("class-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadClass(api);
  });
  $("usage-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadUsage(api);
  });
  if ($("class-course").value) loadClass(api);
  loadUsage(api);
}
