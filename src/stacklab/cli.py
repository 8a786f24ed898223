"""The `stacklab` command: human tables by default, `--json` on every read command."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from stacklab import __version__, logs
from stacklab.config import ConfigError, Settings, SettingsInvalid, describe_settings, load_settings
from stacklab.errors import LabError, StacklabError
from stacklab.labs.durations import format_duration
from stacklab.labs.loader import load_lab
from stacklab.startup import EXIT_CONFIG, StartupError, database_problem, filesystem_problem, open_app
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired
from stacklab.wiring import App

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _settings(ctx: click.Context, serving: bool = False, **options: Any) -> Settings:
    """Settings from the file, the environment, `--set` and this command's options; logging set up from
    them (the service at log_level; one-shot commands at warning unless -v or --debug)."""
    given = {name: value for name, value in options.items() if value is not None}
    settings = load_settings(**{"data_dir": ctx.obj.get("data_dir"), **ctx.obj["overrides"], **given})
    ctx.obj["database_url"] = settings.resolved_database_url
    level = "debug" if ctx.obj.get("debug") else "info" if ctx.obj.get("verbose") else None
    ctx.obj["log_config"] = logs.configure(
        settings.log_format, level or (settings.log_level if serving else "warning")
    )
    return settings


def _echo_err(text: str) -> None:
    click.echo(text, err=True)


def _app(ctx: click.Context, follow_requeue: bool = True) -> App:
    """The engine for a one-shot command: it runs passes only when asked to (`--wait`, `reconcile`)."""
    return open_app(_settings(ctx), follow_requeue=follow_requeue, serving=False)


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
        "away": (
            {"kind": record.away_kind, "at": record.away_at, "limit_s": record.away_limit_s}
            if record.away_kind
            else None
        ),
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
    """Turns stacklab's own errors into one clear line each and a non-zero exit; the traceback only with
    --debug. Exit codes: 1 a command failed, 2 configuration, 3 database, 4 filesystem (stacklab.startup).
    A database or filesystem error that a command did not convert itself is converted here.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `stacklab ... | head`: not a problem of ours
            raise
        except (SQLAlchemyError, OSError) as exc:
            self._fail(ctx, exc, _startup_problem(ctx, exc))
        except StacklabError as exc:
            self._fail(ctx, exc, exc)

    @staticmethod
    def _fail(ctx: click.Context, raised: BaseException, exc: StacklabError) -> None:
        if ctx.obj and ctx.obj.get("debug"):
            traceback.print_exception(raised)
        if isinstance(exc, LabError):
            problems = exc.problems
        else:
            lines = exc.problems if isinstance(exc, SettingsInvalid) else [str(exc)]
            problems = [f"error: {line}" for line in lines]
        for problem in problems:
            click.echo(problem, err=True)
        sys.exit(_exit_code(exc))


def _startup_problem(ctx: click.Context, exc: SQLAlchemyError | OSError) -> StartupError:
    if isinstance(exc, OSError):
        return filesystem_problem(exc.filename or "a file", exc)
    known = (ctx.obj or {}).get("database_url")
    return database_problem(
        known or load_settings(data_dir=ctx.obj.get("data_dir")).resolved_database_url, exc
    )


def _exit_code(exc: StacklabError) -> int:
    if isinstance(exc, StartupError):
        return exc.exit_code
    return EXIT_CONFIG if isinstance(exc, ConfigError) else 1


def _overrides(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """`--set NAME=VALUE` pairs (NAME as in the TOML file; dashes work too)."""
    pairs = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r}: write NAME=VALUE, e.g. --set log_format=json")
        pairs[name.strip().replace("-", "_")] = text
    return pairs


@click.group(cls=StacklabGroup)
@click.version_option(__version__, "--version", prog_name="stacklab", message="%(prog)s %(version)s")
@click.option("--data-dir", envvar="STACKLAB_DATA_DIR", help="Where state lives (STACKLAB_DATA_DIR).")
@click.option("-v", "--verbose", is_flag=True, help="Log what the engine does.")
@click.option("--debug", is_flag=True, help="Log everything; show the traceback of an error.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="NAME=VALUE",
    callback=_overrides,
    help="Set any setting for this command, over the file and STACKLAB_* (e.g. --set log_format=json); "
    "`stacklab config show` lists them.",
)
@click.pass_context
def main(
    ctx: click.Context, data_dir: str | None, verbose: bool, debug: bool, overrides: dict[str, str]
) -> None:
    """stacklab: a lab of their own for every learner.

    Exit codes: 0 done, 1 a command failed, 2 configuration problem, 3 database problem, 4 filesystem
    problem (data dir); each problem is one line on stderr (--debug adds the traceback).
    """
    ctx.ensure_object(dict)
    ctx.obj.update(data_dir=data_dir, verbose=verbose, debug=debug, overrides=overrides)
    logs.configure("text", "debug" if debug else "info" if verbose else "warning")


# lab ------------------------------------------------------------------------------------------------
@main.group()
def lab() -> None:
    """Lab files."""


@lab.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def lab_validate(files: tuple[str, ...]) -> None:
    """Check lab files and their Heat templates (offline, against the Heat release stacklab knows);
    print FILE:LINE: problem for each error."""
    from stacklab.labs.heat_catalogue import heat_version
    from stacklab.labs.lab_templates import lab_template_problems

    failed = False
    for file in files:
        try:
            parsed = load_lab(file)
        except LabError as exc:
            failed = True
            for problem in exc.problems:
                click.echo(problem)
            continue
        problems = lab_template_problems(parsed, file)
        for problem in problems:
            click.echo(problem)
        if problems:
            failed = True
            continue
        checked = f", template checked against Heat {heat_version()}" if parsed.openstack else ""
        click.echo(
            f"{file}: ok ({parsed.id}: {_count(len(parsed.all_node_names()), 'node')}, "
            f"{_count(len(parsed.checks), 'check')}{checked})"
        )
    sys.exit(1 if failed else 0)


@lab.command("test")
@click.argument("labfile", type=click.Path(dir_okay=False))
@click.option("--keep", is_flag=True, help="Leave the lab running afterwards (to debug it); print its id.")
@click.option(
    "--solve-timeout", "solve_timeout_s", default=300.0, show_default=True, help="Seconds per solve script."
)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON (for CI).")
@click.pass_context
def lab_test(ctx: click.Context, labfile: str, keep: bool, solve_timeout_s: float, as_json: bool) -> None:
    """Launch the lab, expect every check to fail, run the solve scripts, expect every check to pass,
    suspend, resume, expect them to pass still, delete. Exit 1 on any surprise (each is named)."""
    from stacklab.labtest import LabTest

    app = _app(ctx)
    started = time.time()
    progress = None if as_json else lambda step: _echo_err(f"  [{time.time() - started:5.1f}s] {step}")
    report = _run(
        LabTest(
            app.environments, labfile, keep=keep, solve_timeout_s=solve_timeout_s, progress=progress
        ).run()
    )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(f"lab test {report.lab} (environment {report.env})")
        click.echo(
            _table(
                ["step", "result", "seconds"],
                [(s.name, "ok" if s.ok else "FAIL", s.seconds) for s in report.steps],
            )
        )
        click.echo()
        click.echo(
            _table(
                ["check", "node", "before solve", "solve", "after solve", "after resume"],
                [
                    (c.name, c.node, c.before_solve, c.solve, c.after_solve, c.after_resume)
                    for c in report.checks
                ],
            )
        )
        click.echo()
        for surprise in report.surprises:
            click.echo(f"SURPRISE {surprise}")
        click.echo(
            ("ok: no surprises" if report.ok else f"FAILED: {_count(len(report.surprises), 'surprise')}")
            + (f"; environment {report.env} kept" if report.kept else "")
        )
    sys.exit(0 if report.ok else 1)


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
    """Verify that a provider can work (credentials, endpoint, quotas); with --lab, also that the lab could
    be created there (an openstack cloud validates the lab's template with its files and parameters and is
    asked for the flavors, images, networks and key pairs the template names); exit 1 on any failure."""
    from stacklab.labs.schema import ProviderEntry
    from stacklab.wiring import default_factories

    parsed = None
    if cloud:
        entry = ProviderEntry(name=name or "cloud", type="openstack", cloud=cloud)
    elif lab_file and name:
        parsed = load_lab(lab_file)
        entries = {e.name: e for e in parsed.providers}
        if name not in entries:
            raise click.UsageError(f"{lab_file} has no provider {name!r} (it has: {', '.join(entries)})")
        entry = entries[name]
    else:
        raise click.UsageError("give NAME with --lab FILE, or --cloud CLOUD")
    factory = default_factories(_settings(ctx)).get(entry.type)
    if factory is None:
        raise click.UsageError(f"provider type {entry.type!r} is not available here")
    instance = factory(entry)
    results = _run(instance.check())
    if parsed is not None and all(ok for _, ok, _ in results):
        results += _run(_check_lab(instance, parsed))
    if as_json:
        click.echo(json.dumps([{"what": w, "ok": ok, "detail": d} for w, ok, d in results], indent=2))
    else:
        for what, ok, detail in results:
            click.echo(f"{'ok  ' if ok else 'FAIL'}  {what}: {detail}")
    sys.exit(0 if results and all(ok for _, ok, _ in results) else 1)


async def _check_lab(instance: Any, parsed: Any) -> list[tuple[str, bool, str]]:
    """The provider's check of this lab: a request like a launch's (a stand-in key and stack name)."""
    from stacklab.labs.lab_templates import cloud_names
    from stacklab.providers.base import StackRequest

    request = StackRequest(
        name="sl-check",
        login_user=parsed.login_user,
        public_key=CHECK_PUBLIC_KEY,
        config=parsed.openstack.model_dump() if parsed.openstack else {},
        lab_dir=parsed.lab_dir,
    )
    return await instance.check_lab(request, cloud_names(parsed))


CHECK_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN0YWNrbGFiIHByb3ZpZGVyIGNoZWNrIGtleSAwMDAw check"
"""A well-formed public key for `provider check --lab` (a validation creates nothing, so no key pair)."""


# template -------------------------------------------------------------------------------------------
@main.group()
def template() -> None:
    """Heat templates."""


@template.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "-e",
    "--environment",
    "environments",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A Heat environment file (parameters, resource_registry), as for `openstack stack create -e`.",
)
def template_check(files: tuple[str, ...], environments: tuple[str, ...]) -> None:
    """Check HOT templates offline against the Heat release stacklab knows (types, properties,
    attributes, references, files); print FILE:LINE: problem for each, exit 1 if there is any."""
    from stacklab.labs.heat_catalogue import heat_version
    from stacklab.labs.templates import Checker, Environment, read_environment

    merged, problems = Environment(), []
    for file in environments:
        env, env_problems = read_environment(file)
        merged.parameters.update(env.parameters)
        merged.registry.update(env.registry)
        problems += env_problems
    checker = Checker(merged)
    for file in files:
        checker.check(file, given=merged.parameters if environments else None)
    problems += checker.problems()
    for problem in problems:
        click.echo(problem)
    if problems:
        sys.exit(1)
    click.echo(f"ok: {_count(len(checker.templates), 'template')} checked against Heat {heat_version()}")


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

    settings = _settings(ctx)
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

    settings = _settings(ctx)
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

    settings = _settings(ctx)
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
        place, estimate = app.environments.queue_spot(record)
        payload["queue"] = {"position": place, "estimate_s": estimate} if place is not None else None
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
    if record.away_kind and record.away_at is not None and record.away_limit_s is not None:
        pause_by = _when(record.away_at + record.away_limit_s)
        click.echo(
            f"{'away':>14}: {record.away_kind} since {_when(record.away_at)} (idle pause by {pause_by})"
        )
    place, estimate = app.environments.queue_spot(record)
    if place is not None and record.queued_at is not None:
        about = f", about {estimate:.0f}s" if estimate is not None else ""
        click.echo(f"{'in line':>14}: number {place} since {_when(record.queued_at)}{about} (docs/queue.md)")
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


@env.command("grant")
@click.argument("ref", metavar="ENV")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), required=True, help="Hours to add.")
@click.option("--reason", required=True, help="Why (kept with the grant and in the audit log).")
@click.pass_context
def env_grant(ctx: click.Context, ref: str, hours: float, reason: str) -> None:
    """Give the learner of ENV more running time under the lab's usage limit (audited)."""
    from stacklab.store.operators import record_action

    app = _app(ctx)
    operator = _cli_operator()
    record = app.environments.grant(ref, hours, reason, operator)
    target = f"{record.course} / {record.lab_id} / {record.learner}"
    record_action(
        app.repo, operator, "grant", time.time(), record.id, target, f"{hours:g} h: {reason.strip()}"
    )
    _echo_usage(app, record)


@env.command("usage")
@click.argument("ref", metavar="ENV")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def env_usage(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show the running time of ENV's learner against the lab's usage limit, and their grants."""
    app = _app(ctx)
    _echo_usage(app, app.environments.resolve(ref), as_json)


def _echo_usage(app: App, record: EnvironmentRecord, as_json: bool = False) -> None:
    from stacklab.store.grants import grants_of

    found = app.environments.allowance(record)
    grants = grants_of(app.repo, record.course, record.learner)
    if as_json:
        usage = None
        if found is not None:
            usage = {
                "hours": found.hours,
                "per": found.per,
                "policy": found.policy,
                "scope": found.scope,
                "used_s": found.used_s,
                "granted_s": found.granted_s,
                "remaining_s": found.remaining_s,
                "over": found.over,
                "resets_at": found.period_ends_at,
            }
        payload = {
            "id": record.id,
            "usage": usage,
            "limit_at": record.usage_limit_at,
            "grants": [g.__dict__ for g in grants],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    if found is None:
        click.echo(f"{record.id}  lab {record.lab_id} sets no usage limit")
    else:
        per = "this week" if found.per == "week" else "in total"
        used, limit = format_duration(round(found.used_s)), format_duration(round(found.limit_s))
        click.echo(
            f"{record.id}  used {used} of {limit} {per} ({found.scope}, {found.policy});"
            f" left {format_duration(round(found.remaining_s))}" + ("  OVER THE LIMIT" if found.over else "")
        )
    for g in grants:
        click.echo(
            f"  grant {_when(g.at)}  {g.lab_id}  {g.seconds / 3600:g} h  by {g.granted_by}: {g.reason}"
        )


def _request_command(name: str, desired: Desired | None, help_text: str) -> None:
    @env.command(name, help=help_text)
    @click.argument("ref", metavar="ENV")
    @click.option("--wait", is_flag=True, help="Wait until the change is done.")
    @click.option("--timeout", "timeout_s", default=900.0, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def command(ctx: click.Context, ref: str, wait: bool, timeout_s: float, as_json: bool) -> None:
        from stacklab.store.operators import record_action

        app = _app(ctx)
        if desired is None:
            record = app.environments.reset(ref)
        else:
            record = app.environments.request(ref, desired, f"{name.capitalize()}Requested")
        target = f"{record.course} / {record.lab_id} / {record.learner}"  # as the operator page records it
        record_action(app.repo, _cli_operator(), name, time.time(), record.id, target)
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

    settings = _settings(ctx)
    engine = make_engine(settings.resolved_database_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    click.echo("the database schema is up to date", err=True)


# config ---------------------------------------------------------------------------------------------
@main.group("config")
def config_group() -> None:
    """The settings: where each value comes from, and whether they can be used."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Every setting with its value (secrets masked), where the value comes from, and its help."""
    from stacklab.config import env_name, load, masked, setting_help, setting_names

    loaded = load(**{"data_dir": ctx.obj.get("data_dir"), **ctx.obj["overrides"]})
    rows = [
        {
            "name": name,
            "value": masked(name, getattr(loaded.settings, name)),
            "source": loaded.origins[name],
            "env": env_name(name),
            "help": setting_help(name),
        }
        for name in setting_names()
    ]
    if as_json:
        click.echo(json.dumps({"file": str(loaded.path), "settings": rows}, indent=2))
        return
    found = "" if loaded.path.is_file() else " (not found: defaults and environment only)"
    click.echo(f"# file: {loaded.path}{found}")
    for row in rows:
        click.echo(f"{row['name']} = {json.dumps(row['value'])}  # {row['source']}; {row['env']}")
        click.echo(f"    {row['help']}")


@config_group.command("check")
@click.pass_context
def config_check(ctx: click.Context) -> None:
    """Validate the settings, the data dir and the database (connecting only); one line per problem and
    exit 2 (configuration), 3 (database) or 4 (data dir); `ok` and exit 0 when all is well."""
    from stacklab.startup import check_data_dir, check_database

    settings = _settings(ctx)  # invalid settings: every problem on its own line, exit 2
    problems: list[StartupError] = []
    for check in (check_data_dir, check_database):
        try:
            check(settings)
        except StartupError as exc:
            problems.append(exc)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(problems[0].exit_code)
    click.echo(f"ok: settings valid, data dir {settings.data_dir} writable, database reachable")


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

    settings = _settings(ctx, serving=True, http_host=host, http_port=port, demo_enabled=demo)
    app = open_app(settings)
    web = create_app(app)
    base = web.state.ctx.public_url
    # JSON logs: stderr stays JSON lines, so the banner goes through the log too
    say = logging.getLogger("stacklab.serve").info if settings.log_format == "json" else _echo_err
    say(f"stacklab {base}  (data in {settings.data_dir})")
    if settings.demo_enabled:
        say(f"  demo lab:   {base}/demo")
    say(f"  operators:  {base}/admin  (password in {Path(settings.data_dir) / 'admin.password'})")
    config = uvicorn.Config(
        web,
        host=settings.http_host,
        port=settings.http_port,
        ws="websockets-sansio",  # the implementation the terminal bridge is tested and measured with
        ws_per_message_deflate=False,  # compression costs more CPU than it saves on terminal output
        log_config=ctx.obj["log_config"],  # uvicorn's access and error logs in our format
        log_level=None,  # the levels of our configuration
        access_log=True,  # in our format; query strings (a terminal's token) are cut by logs.HideQueries
    )
    try:
        uvicorn.Server(config).run()
    finally:
        app.close()


# distributed mode -----------------------------------------------------------------------------------
WORKER_SETTINGS = [
    "runner",
    "broker_url",
    "database_url",
    "job_queue",
    "events_url",
    "reconcile_concurrency",
    "lease_s",
    "provider_timeout_s",
    "scheduler_interval_s",
    "scheduler_lease_s",
    "scheduler_queued_max",
    "redeliver_after_s",
    "reconcile_batch",
    "sweep_interval_s",
    "local_host",
    "local_capacity",
    "host_lost_after_s",
    "member_heartbeat_s",
    "worker_metrics_port",
    "secret_key",
    "data_dir",
    "local_root_dir",
    "log_format",
    "log_level",
]
SCHEDULER_SETTINGS = [
    name
    for name in WORKER_SETTINGS
    if name
    not in (
        "job_queue",
        "events_url",
        "reconcile_concurrency",
        "worker_metrics_port",
        "local_host",
        "local_capacity",
    )
]
_CONFIGURED = (
    "Configuration is read from $STACKLAB_CONFIG or <data_dir>/stacklab.toml, then STACKLAB_* environment "
    "variables; these settings matter here:\n\n"
)


@main.command(
    "worker",
    help="Run passes of runner = celery: a Celery worker consuming the job queue (RabbitMQ or Redis) that "
    "runs each environment's reconcile, and a candidate for the scheduler that sends what is due (one is "
    "elected among all workers and schedulers; see docs/distributed.md). Stops on SIGTERM or Ctrl-C after "
    "the passes it runs.\n\n" + _CONFIGURED + describe_settings(WORKER_SETTINGS).replace("\n", "\n\n"),
)
@click.option("--queue", "queues", multiple=True, help="Queue to consume (repeatable; default: job_queue).")
@click.option("--concurrency", type=int, help="Passes at once (default: reconcile_concurrency).")
@click.option(
    "--scheduler/--no-scheduler",
    "elect",
    default=True,
    show_default=True,
    help="Stand for the scheduler's election (off: only run passes).",
)
@click.option("--metrics-port", type=int, help="Port of /metrics (default: worker_metrics_port; 0: none).")
@click.pass_context
def worker_command(
    ctx: click.Context,
    queues: tuple[str, ...],
    concurrency: int | None,
    elect: bool,
    metrics_port: int | None,
) -> None:
    from stacklab.distributed import require_celery, serve_worker

    settings = _settings(ctx, serving=True, worker_metrics_port=metrics_port)
    require_celery(settings)
    app = open_app(settings)
    serve_worker(app, queues or (settings.job_queue,), concurrency or settings.reconcile_concurrency, elect)


@main.command(
    "scheduler",
    help="Run only a candidate for the scheduler of runner = celery (workers stand by default): while "
    "elected it sends the passes that are due to the workers and sweeps for leaked stacks. Run it where "
    "the providers are reachable.\n\n"
    + _CONFIGURED
    + describe_settings(SCHEDULER_SETTINGS).replace("\n", "\n\n"),
)
@click.pass_context
def scheduler_command(ctx: click.Context) -> None:
    from stacklab.distributed import require_celery, serve_scheduler

    settings = _settings(ctx, serving=True)
    require_celery(settings)
    serve_scheduler(open_app(settings))


# operators ------------------------------------------------------------------------------------------
@main.group()
def operator() -> None:
    """Operator accounts of the admin page (/admin): argon2 password hashes kept in the database.

    The one generated password of older installs is the account `admin` (it follows the admin_password
    setting or <data_dir>/admin.password until `stacklab operator passwd admin` gives it its own).
    """


def _new_password() -> str:
    """Asked twice, hidden, on a terminal; otherwise the first line of stdin (scripts, provisioning)."""
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


def _cli_operator() -> str:
    """Who acts from the command line, as the audit log names them."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


def _account_change(ctx: click.Context, name: str, action: str, change: Callable[[App], object]) -> None:
    from stacklab.store.operators import record_action

    app = _app(ctx)
    try:
        change(app)
        record_action(app.repo, _cli_operator(), action, time.time(), target=f"operator {name}")
    finally:
        app.close()


@operator.command("add")
@click.argument("name")
@click.pass_context
def operator_add(ctx: click.Context, name: str) -> None:
    """Add an operator account NAME; the password comes from a prompt, or from stdin when piped."""
    from stacklab.store.operators import add_operator, check_name

    check_name(name)  # before asking for a password
    password = _new_password()
    _account_change(
        ctx, name, "operator-add", lambda app: add_operator(app.repo, name, password, time.time())
    )
    click.echo(f"operator {name} added: sign in at /admin/login")


@operator.command("passwd")
@click.argument("name")
@click.pass_context
def operator_passwd(ctx: click.Context, name: str) -> None:
    """Give operator NAME a new password (from a prompt or stdin); their open sessions end."""
    from stacklab.store.operators import set_password

    password = _new_password()
    _account_change(
        ctx, name, "operator-passwd", lambda app: set_password(app.repo, name, password, time.time())
    )
    click.echo(f"operator {name}: password changed")


@operator.command("remove")
@click.argument("name")
@click.pass_context
def operator_remove(ctx: click.Context, name: str) -> None:
    """Remove operator NAME: they can no longer sign in, and their open sessions end at once."""
    from stacklab.store.operators import remove_operator

    _account_change(ctx, name, "operator-remove", lambda app: remove_operator(app.repo, name, time.time()))
    click.echo(f"operator {name} removed")


@operator.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_context
def operator_list(ctx: click.Context, as_json: bool) -> None:
    """The operator accounts (never their password hashes)."""
    from stacklab.store.operators import list_operators

    app = _app(ctx)
    try:
        operators = list_operators(app.repo)
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps([o.__dict__ for o in operators], indent=2))
        return
    rows = [
        (
            o.name,
            "admin_password setting" if o.from_setting else "own",
            _when(o.created_at),
            _when(o.updated_at),
        )
        for o in operators
    ]
    click.echo(_table(("NAME", "PASSWORD", "CREATED", "CHANGED"), rows))


from stacklab.cli_report import report  # noqa: E402 - the `report` commands live in their own module

main.add_command(report)

from stacklab.cli_pool import pool  # noqa: E402 - the `pool` commands live in their own module

main.add_command(pool)


if __name__ == "__main__":
    main()
