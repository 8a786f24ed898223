"""`stacklab report usage`: the cost report of a course (store/usage_report.py) as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import time

import click

from stacklab.store.usage_report import WeekRow, parse_since, totals, weekly

CSV_COLUMNS = (
    "course",
    "lab",
    "week",
    "kind",
    "environments",
    "running_node_hours",
    "suspended_node_hours",
    "queued_hours",
    "running_cost",
    "suspended_cost",
    "currency",
)


@click.group()
def report() -> None:
    """Reports on what the labs used."""


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _money(value: float | None, currency: str | None) -> str:
    return "-" if value is None else f"{value:.2f} {currency}"


def _text(course: str, rows: list[WeekRow], total: dict[str, object]) -> str:
    from stacklab.cli import _table

    if not rows:
        return f"no lab of course {course} used any time in this period"
    lines = [
        (
            r.lab if r.kind == "learners" else f"{r.lab} ({r.kind})",
            r.week,
            r.environments,
            f"{r.running_node_hours:.2f}",
            f"{r.suspended_node_hours:.2f}",
            f"{r.queued_hours:.2f}",
            _money(r.running_cost, r.currency),
            _money(r.suspended_cost, r.currency),
        )
        for r in rows
    ]
    lines.append(
        (
            "total",
            "",
            "",
            f"{total['running_node_hours']:.2f}",
            f"{total['suspended_node_hours']:.2f}",
            f"{total['queued_hours']:.2f}",
            _money(total["running_cost"], total["currency"]),  # type: ignore[arg-type]
            _money(total["suspended_cost"], total["currency"]),  # type: ignore[arg-type]
        )
    )
    headers = (
        "LAB",
        "WEEK",
        "ENVS",
        "RUNNING NODE-H",
        "SUSPENDED NODE-H",
        "QUEUED H",
        "RUNNING",
        "SUSPENDED",
    )
    return f"course {course} (weeks from Monday 00:00 UTC)\n" + _table(headers, lines)


def _csv(rows: list[WeekRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.to_json().items()})
    return out.getvalue().rstrip("\n")


@report.command("usage")
@click.option("--course", required=True, help="The course (its id, as the LMS names it).")
@click.option(
    "--since",
    callback=_since,
    metavar="DATE",
    help="Count from this date (YYYY-MM-DD, UTC) or time (YYYY-MM-DDTHH:MM); default: ever.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON: the rows and their totals.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV: one row per lab and week, with a header.")
@click.pass_context
def usage(ctx: click.Context, course: str, since: float | None, as_json: bool, as_csv: bool) -> None:
    """Node-hours running and suspended, and hours queued, per lab and week of a course, with their cost
    where the lab's providers declare a price per node-hour. Counted from the recorded transitions."""
    from stacklab.cli import _app
    from stacklab.envs.pricing import pricing_of

    if as_json and as_csv:
        raise click.UsageError("--json and --csv: choose one")
    app = _app(ctx)
    try:
        until = time.time()
        rows = weekly(app.repo, course, pricing_of(app.environments.lab_of), until, since)
    finally:
        app.close()
    total = totals(rows)
    if as_json:
        body = {"course": course, "since": since, "until": until, "rows": [r.to_json() for r in rows]}
        click.echo(json.dumps({**body, "totals": total}, indent=2))
    elif as_csv:
        click.echo(_csv(rows))
    else:
        click.echo(_text(course, rows, total))
