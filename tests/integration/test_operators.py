"""Operator accounts, the audit log and readiness, over HTTP against the real app on each real database.

The app is the real ASGI app on SQLite, PostgreSQL and MariaDB with a real SSH server and the in-memory
provider; `stacklab operator` runs as the real command. A database "stopped" is a real server taken away
behind a TCP proxy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import make_url, select
from tests.support.tcp_proxy import TcpProxy
from tests.support.web_app import COURSE, bearer, drive, launch, serving

from stacklab.store.operators import add_operator, list_operators, remove_operator, set_password
from stacklab.store.tables import OperatorRecord
from stacklab.wiring import App

pytestmark = pytest.mark.db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def served(
    tmp_path: Path, sshd_port: int, database_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, App]]:
    async with serving(tmp_path, sshd_port, database_url=database_url) as client:
        yield client


async def sign_in(http: httpx.AsyncClient, name: str, password: str) -> str:
    response = await http.post(
        "/admin/login", data={"name": name, "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return str(response.headers["location"].split("#token=")[1])


def hashes(stack: App) -> list[str]:
    with stack.repo.read() as session:
        return [h for h in session.scalars(select(OperatorRecord.password_hash)) if h]


async def test_named_operators_sign_in_and_their_actions_are_in_the_audit_log(served) -> None:  # type: ignore[no-untyped-def]
    http, stack = served
    add_operator(stack.repo, "alice", "alice-password", time.time())
    add_operator(stack.repo, "bob", "bob-password", time.time())
    env_id = (await launch(http, "learner-a"))["environment"]["id"]
    await drive(stack, env_id)
    for name, password in [
        ("alice", "wrong-password"),
        ("nobody", "alice-password"),
        ("bob", "alice-password"),
    ]:
        refused = await http.post("/admin/login", data={"name": name, "password": password})
        assert refused.status_code == 401 and "Wrong operator name or password" in refused.text
    alice = await sign_in(http, "Alice ", "alice-password")
    assert jwt.decode(alice, options={"verify_signature": False})["sub"] == "alice"
    texts = []
    for action in ("suspend", "resume"):
        acted = await http.post(f"/api/v1/admin/environments/{env_id}/{action}", headers=bearer(alice))
        assert acted.status_code == 200, acted.text
        texts.append(acted.text)
    view = (await http.post(f"/api/v1/admin/environments/{env_id}/observe", headers=bearer(alice))).json()
    assert view["lab_url"].endswith(f"/lab/{env_id}#token={view['token']}")
    assert (
        await http.get(f"/api/v1/environments/{env_id}", headers=bearer(view["token"]))
    ).status_code == 200
    watched = await http.post(f"/api/v1/environments/{env_id}/reset", headers=bearer(view["token"]))
    assert watched.status_code == 403  # read-only: watches, never writes
    reset = await http.post(f"/api/v1/admin/environments/{env_id}/reset", headers=bearer(alice))
    assert reset.status_code == 200, reset.text
    assert (
        await http.get(f"/api/v1/environments/{env_id}", headers=bearer(view["token"]))
    ).status_code == 401
    bob = await sign_in(http, "bob", "bob-password")
    revoked = await http.post(f"/api/v1/courses/{COURSE}/learners/learner-a/revoke", headers=bearer(bob))
    assert revoked.json() == {"environments": [env_id]}
    assert (await http.delete(f"/api/v1/environments/{env_id}", headers=bearer(bob))).status_code == 200
    await sign_in(http, "", "operator-pass")  # the admin_password setting: the account `admin`

    audit = (await http.get("/api/v1/admin/audit", headers=bearer(alice))).json()
    texts.append(str(audit))
    assert [(e["operator"], e["action"]) for e in audit] == [
        ("admin", "sign-in"),
        ("bob", "delete"),
        ("bob", "revoke"),
        ("bob", "sign-in"),
        ("alice", "reset"),
        ("alice", "observe"),
        ("alice", "resume"),
        ("alice", "suspend"),
        ("alice", "sign-in"),
    ]
    on_env = [e for e in audit if e["env_id"] == env_id]
    assert {e["target"] for e in on_env} == {f"{COURSE} / hello-lab / learner-a"} and len(on_env) == 5
    revoke = audit[2]
    assert (revoke["target"], revoke["detail"]) == (
        f"{COURSE} / learner-a",
        "tokens of 1 environment(s) withdrawn",
    )
    assert audit[0]["at"] >= audit[-1]["at"]
    by_bob = (await http.get("/api/v1/admin/audit?operator=bob", headers=bearer(alice))).json()
    assert [e["action"] for e in by_bob] == ["delete", "revoke", "sign-in"]
    env_page = (await http.get(f"/api/v1/admin/audit?env={env_id}&limit=2", headers=bearer(alice))).json()
    older = await http.get(
        f"/api/v1/admin/audit?env={env_id}&before={env_page[-1]['id']}", headers=bearer(alice)
    )
    assert [e["action"] for e in env_page + older.json()] == [
        "delete",
        "reset",
        "observe",
        "resume",
        "suspend",
    ]
    assert all(h not in text for h in hashes(stack) for text in texts)


async def test_a_password_change_or_removal_ends_the_accounts_sessions(served) -> None:  # type: ignore[no-untyped-def]
    http, stack = served
    add_operator(stack.repo, "carol", "carol-password", time.time())
    first = await sign_in(http, "carol", "carol-password")
    assert (await http.get("/api/v1/admin/environments", headers=bearer(first))).status_code == 200
    set_password(stack.repo, "carol", "carol-new-password", time.time())
    stale = await http.get("/api/v1/admin/environments", headers=bearer(first))
    assert stale.status_code == 401 and "password changed" in stale.json()["detail"]
    assert (
        await http.post("/admin/login", data={"name": "carol", "password": "carol-password"})
    ).status_code == 401
    second = await sign_in(http, "carol", "carol-new-password")
    refreshed = (await http.post("/api/v1/admin/token", headers=bearer(second))).json()
    remove_operator(stack.repo, "carol", time.time())
    for token in (second, refreshed["token"]):
        gone = await http.get("/api/v1/admin/audit", headers=bearer(token))
        assert gone.status_code == 401 and "no longer exists" in gone.json()["detail"]
    again = await http.post("/admin/login", data={"name": "carol", "password": "carol-new-password"})
    assert again.status_code == 401
    assert [o.name for o in list_operators(stack.repo)] == ["admin"]


async def test_the_admin_account_follows_the_password_setting_until_it_has_its_own(  # type: ignore[no-untyped-def]
    tmp_path: Path, sshd_port: int, database_url: str
) -> None:
    def started(password: str) -> Any:
        return serving(tmp_path, sshd_port, database_url=database_url, admin_password=password)

    async with started("first-password") as (http, stack):
        first = await sign_in(http, "admin", "first-password")
        assert [(o.name, o.from_setting) for o in list_operators(stack.repo)] == [("admin", True)]
    async with started("second-password") as (http, stack):
        assert (await http.post("/admin/login", data={"password": "first-password"})).status_code == 401
        assert (await http.get("/api/v1/admin/audit", headers=bearer(first))).status_code == 401
        await sign_in(http, "admin", "second-password")
        set_password(stack.repo, "admin", "admins-own-password", time.time())
    async with started("third-password") as (http, stack):
        assert (await http.post("/admin/login", data={"password": "third-password"})).status_code == 401
        await sign_in(http, "admin", "admins-own-password")
        remove_operator(stack.repo, "admin", time.time())
    async with started("fourth-password") as (http, stack):  # a removed admin is not brought back
        assert (await http.post("/admin/login", data={"password": "fourth-password"})).status_code == 401
        assert list_operators(stack.repo) == []


def stacklab(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STACKLAB_DATA_DIR": str(data_dir), "STACKLAB_ADMIN_PASSWORD": "operator-pass"}
    return subprocess.run(
        [sys.executable, "-m", "stacklab.cli", *args],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_operator_command_adds_lists_and_removes_accounts(tmp_path: Path, sshd_port: int) -> None:
    data = tmp_path / "data"
    added = stacklab(data, "operator", "add", "dora", stdin="dora-password\n")
    assert added.returncode == 0 and "dora added" in added.stdout, added.stderr
    for args, stdin, error in [
        (("add", "dora"), "other-password\n", "exists"),
        (("add", "Not A Name"), "", "operator name"),
        (("add", "eve"), "short\n", "8 to 1024 characters"),
        (("remove", "nobody"), "", "no operator 'nobody'"),
    ]:
        failed = stacklab(data, "operator", *args, stdin=stdin)
        assert failed.returncode == 1 and error in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr
    async with serving(tmp_path, sshd_port) as (http, stack):
        dora = await sign_in(http, "dora", "dora-password")
        listed = stacklab(data, "operator", "list")
        assert listed.stdout.split("\n")[0].split() == ["NAME", "PASSWORD", "CREATED", "CHANGED"]
        assert [line.split()[:2] for line in listed.stdout.strip().split("\n")[1:]] == [
            ["admin", "admin_password"],
            ["dora", "own"],
        ]
        assert not any(h in listed.stdout for h in hashes(stack))
        assert stacklab(data, "operator", "remove", "dora").returncode == 0
        assert (await http.get("/api/v1/admin/environments", headers=bearer(dora))).status_code == 401
        audit = (
            await http.get("/api/v1/admin/audit", headers=bearer(await sign_in(http, "", "operator-pass")))
        ).json()
        actions = [(e["action"], e["target"]) for e in audit if e["operator"].startswith("cli")]
        assert actions == [("operator-remove", "operator dora"), ("operator-add", "operator dora")]


async def test_environment_actions_from_the_cli_are_in_the_audit_log(tmp_path: Path, sshd_port: int) -> None:
    """An operator who suspends or deletes a learner's lab with `stacklab env` is recorded as one who
    does so on the operator page: who, what, which lab, when."""
    async with serving(tmp_path, sshd_port) as (http, stack):
        env_id = (await launch(http, "cli-audited"))["environment"]["id"]
        await stack.engine.runner.idle()
        for action in ("suspend", "delete"):
            done = stacklab(tmp_path / "data", "env", action, env_id)
            assert done.returncode == 0, done.stderr
        audit = (
            await http.get("/api/v1/admin/audit", headers=bearer(await sign_in(http, "", "operator-pass")))
        ).json()
        cli = [(e["action"], e["env_id"], e["target"]) for e in audit if e["operator"].startswith("cli")]
        target = f"{COURSE} / hello-lab / cli-audited"
        assert cli == [("delete", env_id, target), ("suspend", env_id, target)]


async def test_readyz_answers_while_the_database_does(served) -> None:  # type: ignore[no-untyped-def]
    http, _stack = served
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


@pytest.mark.parametrize("database_url", ["postgresql", "mariadb"], indirect=True)
async def test_readyz_says_503_and_why_while_the_database_is_stopped(
    tmp_path: Path, sshd_port: int, database_url: str
) -> None:
    real = make_url(database_url)
    default_port = 5432 if real.drivername.startswith("postgres") else 3306
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or default_port))
    proxy.start()
    behind_proxy = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        async with serving(tmp_path, sshd_port, database_url=behind_proxy) as (http, _stack):
            assert (await http.get("/readyz")).status_code == 200
            proxy.stop()
            stopped = await http.get("/readyz")
            assert stopped.status_code == 503, stopped.text
            body = stopped.json()
            assert body["status"] == "unavailable" and body["reason"].startswith(
                "the database does not answer: "
            )
            assert (await http.get("/healthz")).status_code == 200  # alive, just not ready
            proxy.start()
            assert (await http.get("/readyz")).status_code == 200
    finally:
        proxy.stop()
