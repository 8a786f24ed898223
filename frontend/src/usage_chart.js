// The cost report in the operator page: nodes running and suspended and labs queued over time, drawn by
// uPlot (bundled here, never from a CDN), and the report's rows per course, lab and week with their cost.
// Data: GET /api/v1/admin/usage (store/usage_report.py).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h } from "./api.js";

export const SERIES = [
  { key: "running", label: "Nodes running", stroke: "#1b7f3b", fill: "rgba(27,127,59,0.12)" },
  { key: "suspended", label: "Nodes suspended", stroke: "#9a6700", fill: "rgba(154,103,0,0.10)" },
  { key: "queued", label: "Labs queued", stroke: "#3b5bdb", fill: "rgba(59,91,219,0.08)" },
];

let chart = null;

/** Draw (or redraw) the chart of a report's series in `box`; its width follows the box. */
export function drawChart(box, series) {
  const data = [series.times, ...SERIES.map((s) => series[s.key])];
  const width = Math.max(320, box.clientWidth || 800);
  if (chart) chart.destroy();
  chart = new uPlot(
    {
      width,
      height: 260,
      scales: { x: { time: true } },
      axes: [{}, { label: "nodes / labs", size: 60 }],
      series: [{ label: "Time (bucket start)" }, ...SERIES.map((s) => ({ label: s.label, stroke: s.stroke, fill: s.fill, width: 2, points: { show: false } }))],
      legend: { live: true },
    },
    data,
    box,
  );
  return chart;
}

/** A sentence that says what the chart shows (its text alternative). */
export function chartSummary(series) {
  const peak = (values) => Math.max(0, ...values).toFixed(1);
  const hours = series.bucket_s >= 86400 ? `${series.bucket_s / 86400} day` : series.bucket_s >= 3600 ? `${series.bucket_s / 3600} h` : `${series.bucket_s / 60} min`;
  return `Average per ${hours}: at most ${peak(series.running)} nodes running, ${peak(series.suspended)} suspended and ${peak(series.queued)} labs queued.`;
}

function money(value, currency) {
  return value === null || value === undefined ? "—" : `${value.toFixed(2)} ${currency}`;
}

const hours = (v) => Number(v).toFixed(2);

/** The report's rows and their totals as table rows. */
export function usageRows(report) {
  if (!report.rows.length) {
    return [h("tr", {}, h("td", { colspan: "9", class: "empty" }, "No lab used any time in this period."))];
  }
  const rows = report.rows.map((r) =>
    h(
      "tr",
      { "data-usage": `${r.course}/${r.lab}/${r.kind}/${r.week}` },
      h("td", {}, r.course),
      h("td", { class: "nowrap" }, r.kind === "learners" ? r.lab : `${r.lab} (${r.kind})`),
      h("td", { class: "nowrap" }, r.week),
      h("td", { class: "num" }, String(r.environments)),
      h("td", { class: "num" }, hours(r.running_node_hours)),
      h("td", { class: "num" }, hours(r.suspended_node_hours)),
      h("td", { class: "num" }, hours(r.queued_hours)),
      h("td", { class: "num nowrap" }, money(r.running_cost, r.currency)),
      h("td", { class: "num nowrap" }, money(r.suspended_cost, r.currency)),
    ),
  );
  const t = report.totals;
  rows.push(
    h(
      "tr",
      { class: "total" },
      h("th", { scope: "row", colspan: "4" }, "Total"),
      h("td", { class: "num" }, hours(t.running_node_hours)),
      h("td", { class: "num" }, hours(t.suspended_node_hours)),
      h("td", { class: "num" }, hours(t.queued_hours)),
      h("td", { class: "num nowrap" }, money(t.running_cost, t.currency)),
      h("td", { class: "num nowrap" }, money(t.suspended_cost, t.currency)),
    ),
  );
  return rows;
}
