"""The `stacklab` command: human tables by default, `--json` on every read command."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from stacklab import __version__
from stacklab.config import describe_settings, load_settings
from stacklab.errors import LabError, StacklabError
from stacklab.labs.durations import format_duration
from stacklab.labs.loader import load_lab
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired
from stacklab.wiring import App, build_app

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _app(ctx: click.Context, follow_requeue: bool = True) -> App:
    return build_app(load_settings(data_dir=ctx.obj.get("data_dir")), follow_requeue=follow_requeue)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _ago(epoch: float | None) -> str:
    return "-" if epoch is None else format_duration(round(max(0.0, time.time() - epoch))) + " ago"


def env_summary(record: EnvironmentRecord) -> dict[str, Any]:
    """What may be shown of an environment: never its secrets."""
    return {
        "id": record.id,
        "course": record.course,
        "lab": record.lab_id,
        "learner": record.learner,
        "desired": record.desired,
        "observed": record.observed,
        "progress": record.progress,
        "provider": record.provider,
        "stack": record.stack_name,
        "nodes": record.nodes or {},
        "created_at": record.created_at,
        "last_activity_at": record.last_activity_at,
        "suspended_at": record.suspended_at,
        "ready_at": record.ready_at,
        "due_at": record.due_at,
        "attempts": record.attempts,
        "last_error": record.last_error,
        "last_reason": record.last_reason,
    }


def _print_progress(started: float) -> Callable[[EnvironmentRecord], None]:
    def show(record: EnvironmentRecord) -> None:
        click.echo(f"  [{time.time() - started:5.1f}s] {record.observed:<10} {record.progress}", err=True)

    return show


def _wait(app: App, record: EnvironmentRecord, timeout_s: float) -> EnvironmentRecord:
    started = time.time()
    done = _run(app.environments.drive(record.id, timeout_s, _print_progress(started)))
    if done.last_error and done.observed == "failed":
        raise click.ClickException(f"environment {done.id} failed: {done.last_reason}: {done.last_error}")
    if not app.environments.settled(done):
        raise click.ClickException(f"environment {done.id} did not settle within {timeout_s:g}s")
    return done


class StacklabGroup(click.Group):
    """Turns stacklab's own errors into one clear line and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            sys.exit(1)
        except StacklabError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=StacklabGroup)
@click.version_option(__version__, "--version", prog_name="stacklab", message="%(prog)s %(version)s")
@click.option("--data-dir", envvar="STACKLAB_DATA_DIR", help="Where state lives (STACKLAB_DATA_DIR).")
@click.option("-v", "--verbose", is_flag=True, help="Log what the engine does.")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None, verbose: bool) -> None:
    """stacklab: a lab of their own for every learner."""
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


# lab ------------------------------------------------------------------------------------------------
@main.group()
def lab() -> None:
    """Lab files."""


@lab.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def lab_validate(files: tuple[str, ...]) -> None:
    """Check lab files; print FILE:LINE: field: problem for each error."""
    failed = False
    for file in files:
        try:
            parsed = load_lab(file)
        except LabError as exc:
            failed = True
            for problem in exc.problems:
                click.echo(problem)
            continue
        click.echo(
            f"{file}: ok ({parsed.id}: {_count(len(parsed.all_node_names()), 'node')}, "
            f"{_count(len(parsed.checks), 'check')})"
        )
    sys.exit(1 if failed else 0)


# provider -------------------------------------------------------------------------------------------
@main.group()
def provider() -> None:
    """Providers (where labs run)."""


@provider.command("check")
@click.argument("name", required=False)
@click.option("--lab", "lab_file", type=click.Path(dir_okay=False), help="Lab file whose provider NAME is.")
@click.option("--cloud", help="Check this cloud of clouds.yaml (an openstack provider) instead.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def provider_check(
    ctx: click.Context, name: str | None, lab_file: str | None, cloud: str | None, as_json: bool
) -> None:
    """Verify that a provider can work (credentials, endpoint, quotas); exit 1 on any failure."""
    from stacklab.labs.schema import ProviderEntry
    from stacklab.wiring import default_factories

    if cloud:
        entry = ProviderEntry(name=name or "cloud", type="openstack", cloud=cloud)
    elif lab_file and name:
        entries = {e.name: e for e in load_lab(lab_file).providers}
        if name not in entries:
            raise click.UsageError(f"{lab_file} has no provider {name!r} (it has: {', '.join(entries)})")
        entry = entries[name]
    else:
        raise click.UsageError("give NAME with --lab FILE, or --cloud CLOUD")
    factory = default_factories(load_settings(data_dir=ctx.obj.get("data_dir"))).get(entry.type)
    if factory is None:
        raise click.UsageError(f"provider type {entry.type!r} is not available here")
    results = _run(factory(entry).check())
    if as_json:
        click.echo(json.dumps([{"what": w, "ok": ok, "detail": d} for w, ok, d in results], indent=2))
    else:
        for what, ok, detail in results:
            click.echo(f"{'ok  ' if ok else 'FAIL'}  {what}: {detail}")
    sys.exit(0 if results and all(ok for _, ok, _ in results) else 1)


# image ----------------------------------------------------------------------------------------------
@main.group()
def image() -> None:
    """The local provider's base image."""


@image.command("build")
@click.option("--force", is_flag=True, help="Rebuild even when a current image exists.")
@click.pass_context
def image_build(ctx: click.Context, force: bool) -> None:
    """Build (once) the Debian base image that local nodes boot from."""
    from stacklab.providers.local.image import build_base_image

    settings = load_settings(data_dir=ctx.obj.get("data_dir"))
    started = time.time()
    path = _run(
        build_base_image(
            settings.resolved_image_dir, force=force, progress=lambda msg: click.echo(msg, err=True)
        )
    )
    click.echo(f"base image ready at {path} ({time.time() - started:.1f}s)")


@image.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def image_list(ctx: click.Context, as_json: bool) -> None:
    """Base images on this host: the current recipe's, and older ones with what still uses them."""
    from stacklab.providers.local.image import image_uses

    settings = load_settings(data_dir=ctx.obj.get("data_dir"))
    uses = image_uses(settings.resolved_image_dir, [Path(settings.resolved_local_root_dir)])
    if as_json:
        rows = [{"path": str(u.path), "current": u.current, "used_by": list(u.users)} for u in uses]
        click.echo(json.dumps(rows, indent=2))
        return
    if not uses:
        click.echo(f"no base image under {settings.resolved_image_dir} (stacklab image build makes one)")
    for use in uses:
        state = "current" if use.current else ("in use" if use.users else "unused: prune removes it")
        click.echo(f"{use.path}  {state}")
        for user in use.users:
            click.echo(f"    {user}")


@image.command("prune")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.pass_context
def image_prune(ctx: click.Context, dry_run: bool) -> None:
    """Remove base images of older recipes that nothing uses (no mounted node anywhere on the host, no
    stack of this data dir recorded on them)."""
    from stacklab.providers.local.image import prune_images

    settings = load_settings(data_dir=ctx.obj.get("data_dir"))
    roots = [Path(settings.resolved_local_root_dir)]
    removed = _run(prune_images(settings.resolved_image_dir, roots, dry_run))
    verb = "would remove" if dry_run else "removed"
    for path in removed:
        click.echo(f"{verb} {path}")
    if not removed:
        click.echo("nothing to remove: every image is current or in use")


# env ------------------------------------------------------------------------------------------------
@main.group()
def env() -> None:
    """Environments (ENV is an id or course/lab/learner)."""


@env.command("launch")
@click.argument("labfile", type=click.Path(dir_okay=False))
@click.option("--learner", required=True, help="The learner's id.")
@click.option("--course", default="default", show_default=True)
@click.option("--wait", is_flag=True, help="Wait until every node answers SSH.")
@click.option("--timeout", "timeout_s", default=900.0, show_default=True, help="Seconds to wait.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def env_launch(
    ctx: click.Context, labfile: str, learner: str, course: str, wait: bool, timeout_s: float, as_json: bool
) -> None:
    """Launch (or resume) the learner's environment of a lab."""
    app = _app(ctx)
    record = app.environments.launch(labfile, learner, course)
    if wait:
        record = _wait(app, record, timeout_s)
    else:
        _run(app.controller.reconcile(record.id))
        record = app.repo.get(record.id)
    _emit_env(record, as_json)


def _emit_env(record: EnvironmentRecord, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(env_summary(record), indent=2))
    else:
        click.echo(f"{record.id}  {record.course}/{record.lab_id}/{record.learner}  {record.observed}")


@env.command("list")
@click.option("--course")
@click.option("--state", help="Observed state to show.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def env_list(ctx: click.Context, course: str | None, state: str | None, as_json: bool) -> None:
    """List environments."""
    records = _app(ctx).repo.list(course=course, observed=state)
    if as_json:
        click.echo(json.dumps([env_summary(r) for r in records], indent=2))
        return
    rows = [
        (
            r.id,
            r.course,
            r.lab_id,
            r.learner,
            r.desired,
            r.observed,
            r.provider or "-",
            _ago(r.last_activity_at),
            r.last_reason or "",
        )
        for r in records
    ]
    click.echo(
        _table(
            ("ID", "COURSE", "LAB", "LEARNER", "DESIRED", "OBSERVED", "PROVIDER", "ACTIVE", "REASON"), rows
        )
    )


@env.command("show")
@click.argument("ref", metavar="ENV")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def env_show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show one environment with its transition history."""
    app = _app(ctx)
    record = app.environments.resolve(ref)
    history = app.environments.history(record)
    runs = app.repo.check_runs(record.id)
    if as_json:
        payload = env_summary(record)
        payload["history"] = [
            {
                "at": t.at,
                "kind": t.kind,
                "from": t.from_state,
                "to": t.to_state,
                "reason": t.reason,
                "message": t.message,
            }
            for t in history
        ]
        payload["check_runs"] = [{"at": r.at, "score": r.score, "max_score": r.max_score} for r in runs]
        click.echo(json.dumps(payload, indent=2))
        return
    summary = env_summary(record)
    for key in (
        "id",
        "course",
        "lab",
        "learner",
        "desired",
        "observed",
        "progress",
        "provider",
        "stack",
        "attempts",
        "last_reason",
        "last_error",
    ):
        click.echo(f"{key:>14}: {summary[key] if summary[key] is not None else '-'}")
    for key in ("created_at", "last_activity_at", "ready_at", "suspended_at", "due_at"):
        click.echo(f"{key:>14}: {_when(summary[key])}")
    for name, node in (record.nodes or {}).items():
        click.echo(f"{'node':>14}: {name} {node['host']}:{node['port']}")
    click.echo("\nhistory:")
    click.echo(
        _table(
            ("AT", "KIND", "FROM", "TO", "REASON", "MESSAGE"),
            (
                (
                    _when(t.at),
                    t.kind,
                    t.from_state,
                    t.to_state,
                    t.reason,
                    t.message.splitlines()[0] if t.message else "",
                )
                for t in history
            ),
        )
    )
    if runs:
        click.echo("\nchecks:")
        click.echo(_table(("AT", "SCORE"), ((_when(r.at), f"{r.score:g}/{r.max_score:g}") for r in runs)))


@env.command("touch")
@click.argument("ref", metavar="ENV")
@click.pass_context
def env_touch(ctx: click.Context, ref: str) -> None:
    """Record learner activity (keeps the environment running, wakes a suspended one)."""
    record = _app(ctx).environments.touch(ref)
    click.echo(f"{record.id} active at {_when(record.last_activity_at)}")


def _request_command(name: str, desired: Desired | None, help_text: str) -> None:
    @env.command(name, help=help_text)
    @click.argument("ref", metavar="ENV")
    @click.option("--wait", is_flag=True, help="Wait until the change is done.")
    @click.option("--timeout", "timeout_s", default=900.0, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def command(ctx: click.Context, ref: str, wait: bool, timeout_s: float, as_json: bool) -> None:
        app = _app(ctx)
        if desired is None:
            record = app.environments.reset(ref)
        else:
            record = app.environments.request(ref, desired, f"{name.capitalize()}Requested")
        if wait:
            record = _wait(app, record, timeout_s)
        _emit_env(record, as_json)


_request_command("suspend", Desired.SUSPENDED, "Suspend an environment (freeze its nodes).")
_request_command("resume", Desired.RUNNING, "Resume a suspended environment.")
_request_command("delete", Desired.DELETED, "Delete an environment and everything it owns.")
_request_command("reset", None, "Throw the environment away and start a fresh one.")


@env.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("ref", metavar="ENV")
@click.option("--node", help="Node to run on (default: the first node the learner may open).")
@click.option("--timeout", "timeout_s", default=600.0, show_default=True)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def env_exec(
    ctx: click.Context, ref: str, node: str | None, timeout_s: float, command: tuple[str, ...]
) -> None:
    """Run CMD on a node over SSH as the login user; exit with its status."""
    import shlex

    result = _run(
        _app(ctx).environments.exec(
            ref, shlex.join(command) if len(command) > 1 else command[0], node, timeout_s
        )
    )
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.exit_status)


@env.command("check")
@click.argument("ref", metavar="ENV")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def env_check(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Run the lab's checks; print each result, hint and the weighted score."""
    report = _run(_app(ctx).environments.check(ref))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "results": [r.to_json() for r in report.results],
                    "score": report.score,
                    "max_score": report.max_score,
                    "counted_score": report.counted,
                },
                indent=2,
            )
        )
        return
    for result in report.results:
        mark = "PASS" if result.passed else "FAIL"
        click.echo(f"{mark}  {result.name} ({result.weight:g}) on {result.node}")
        if not result.passed and result.hint:
            click.echo(f"      hint: {result.hint}")
    click.echo(f"score: {report.score:g}/{report.max_score:g} (counted: {report.counted:g})")


# controller -----------------------------------------------------------------------------------------
@main.command("reconcile")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reconcile(ctx: click.Context, as_json: bool) -> None:
    """One controller pass: sweep leaks, then one step for every environment that is due."""
    app = _app(ctx, follow_requeue=False)

    async def one_pass() -> tuple[Any, int]:
        report = await app.engine.sweep()
        count = await app.engine.run_pass()
        return report, count

    report, count = _run(one_pass())
    summary = {
        "reconciled": count,
        "removed_leaks": report.removed,
        "repaired": report.repaired,
        "errors": report.errors,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(
            f"reconciled {count} environment(s); removed {len(report.removed)} leaked stack(s); "
            f"repaired {len(report.repaired)}"
        )
        for error in report.errors:
            click.echo(f"error: {error}", err=True)


@main.command("migrate")
@click.pass_context
def migrate_command(ctx: click.Context) -> None:
    """Bring the database schema to the newest revision, then exit.

    `serve` migrates at start too; installers (the Tutor plugin's init task, Ansible) run this first so
    that several service processes never race to migrate one database.
    """
    from stacklab.store.database import make_engine, migrate

    settings = load_settings(data_dir=ctx.obj.get("data_dir"))
    engine = make_engine(settings.resolved_database_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    click.echo("the database schema is up to date", err=True)


@main.command(
    "serve",
    help="Run the service: web API, lab pages, terminals and the controller loop, in one process.\n\n"
    "Configuration is read from $STACKLAB_CONFIG or <data_dir>/stacklab.toml, then STACKLAB_* "
    "environment variables:\n\n" + describe_settings().replace("\n", "\n\n"),
)
@click.option("--host", help="Listen address (default: http_host).")
@click.option("--port", type=int, help="Listen port (default: http_port).")
@click.option(
    "--demo/--no-demo",
    default=None,
    help="Offer the demo lab at /demo to anyone, capped (default: the demo_enabled setting, off).",
)
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, demo: bool | None) -> None:
    import uvicorn

    from stacklab.web.app import create_app

    settings = load_settings(
        data_dir=ctx.obj.get("data_dir"), http_host=host, http_port=port, demo_enabled=demo
    )
    app = build_app(settings)
    web = create_app(app)
    base = web.state.ctx.public_url
    click.echo(f"stacklab {base}  (data in {settings.data_dir})", err=True)
    if settings.demo_enabled:
        click.echo(f"  demo lab:   {base}/demo", err=True)
    click.echo(
        f"  operators:  {base}/admin  (password in {Path(settings.data_dir) / 'admin.password'})", err=True
    )
    config = uvicorn.Config(
        web,
        host=settings.http_host,
        port=settings.http_port,
        ws="websockets-sansio",  # the implementation the terminal bridge is tested and measured with
        ws_per_message_deflate=False,  # compression costs more CPU than it saves on terminal output
        access_log=False,  # websocket URLs carry tokens
        log_level="warning",
    )
    try:
        uvicorn.Server(config).run()
    finally:
        app.close()


if __name__ == "__main__":
    main()
