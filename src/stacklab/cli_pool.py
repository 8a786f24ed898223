"""`stacklab pool list|sync`: the warm pools' members (envs/pools.py), and starting a course's pool before
its first learner launches."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from stacklab.envs.controller import seal
from stacklab.envs.pools import sync_pool
from stacklab.labs.loader import lab_digest, load_lab


@click.group()
def pool() -> None:
    """Warm pools: environments launched ahead of learners (a lab's `warm:` section)."""


@pool.command("list")
@click.option("--course")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def pool_list(ctx: click.Context, course: str | None, as_json: bool) -> None:
    """List the pools' members (they never appear in `env list`)."""
    from stacklab.cli import _app, _table, _when, env_summary

    members = _app(ctx).repo.list(course=course, pools=True)
    if as_json:
        click.echo(json.dumps([{**env_summary(m), "pool": m.pool} for m in members], indent=2))
        return
    rows = [
        (m.id, m.course, m.lab_id, m.pool, m.learner, m.desired, m.observed, _when(m.ready_at), m.stack_name)
        for m in members
    ]
    headers = ("ID", "COURSE", "LAB", "PROVIDER", "MEMBER", "DESIRED", "OBSERVED", "READY", "STACK")
    click.echo(_table(headers, rows))


@pool.command("sync")
@click.argument("labfile", type=click.Path(dir_okay=False))
@click.option("--course", default="default", show_default=True)
@click.pass_context
def pool_sync(ctx: click.Context, labfile: str, course: str) -> None:
    """Bring the lab's pools in COURSE in line with LABFILE now (a learner's launch does it too): add the
    members its `warm:` asks for, rebuild those made from an older version, drain what it no longer wants.
    The service fills them (in the session hours)."""
    from stacklab.cli import _app

    app = _app(ctx)
    path = Path(labfile).resolve()
    lab = load_lab(path)
    text = path.read_text()
    digest, now = lab_digest(text), time.time()
    app.repo.save_lab(digest, lab.id, str(path), text, now)
    empty = seal(app.controller.vault, {})
    app.repo.write(lambda session: sync_pool(session, course, lab, digest, now, empty))
    size = lab.warm.size if lab.warm else 0
    click.echo(f"{lab.id} in {course}: {size} per provider on {', '.join(p.name for p in lab.providers)}")
