"""Operator accounts (argon2id password hashes) and the audit log of what operators did.

Accounts are rows, so every web process signs in against the same list and a removed account stops working
everywhere at once: operator tokens carry the account's token generation, which removal (and a new password)
moves on. Installs from before named accounts had one generated password: it keeps working as the account
`admin`, which follows the admin_password setting (or <data_dir>/admin.password) until an operator gives it
a password of its own with `stacklab operator passwd admin`. A removed `admin` stays removed.

Hashes never leave this module except into the database; nothing here logs a password or a hash.
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stacklab.errors import Conflict, InvalidInput, NotFound
from stacklab.store.repository import Repository
from stacklab.store.tables import AuditRecord, OperatorRecord

NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
SETTING_ACCOUNT = "admin"
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
MAX_AUDIT_ENTRIES = 500

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
_UNKNOWN = _hasher.hash("no such account")  # verified against: a wrong name costs what a wrong password does


@dataclass(frozen=True)
class Operator:
    """What may be shown of an account: never its hash."""

    name: str
    created_at: float
    updated_at: float
    from_setting: bool
    generation: int


def _public(record: OperatorRecord) -> Operator:
    return Operator(
        record.name, record.created_at, record.updated_at, record.from_setting, record.token_generation
    )


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(
            f"operator name {name!r}: 1-64 lowercase letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidInput(f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    return password


def _matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# accounts ---------------------------------------------------------------------------------------------
def add_operator(repo: Repository, name: str, password: str, now: float) -> Operator:
    """A new account (a removed one's name may be taken again); Conflict when it exists."""
    password_hash = _hasher.hash(check_password(password))
    check_name(name)

    def add(session: Session) -> Operator:
        record = session.get(OperatorRecord, name, with_for_update=True)
        if record is not None and record.removed_at is None:
            raise Conflict(f"operator {name!r} exists (`stacklab operator passwd {name}` changes it)")
        if record is None:
            record = OperatorRecord(name=name, token_generation=0, created_at=now)
            session.add(record)
        record.password_hash, record.from_setting = password_hash, False
        record.updated_at, record.removed_at = now, None
        session.flush()
        return _public(record)

    try:  # concurrent adds deadlock on MariaDB (their locking reads of absent rows take gap locks)
        return repo.write(add)
    except IntegrityError as exc:
        raise Conflict(f"operator {name!r} was just added by someone else") from exc


def set_password(repo: Repository, name: str, password: str, now: float) -> Operator:
    """A new password; every token the account had stops working."""
    password_hash = _hasher.hash(check_password(password))

    def change(session: Session) -> Operator:
        record = _active(session.get(OperatorRecord, name, with_for_update=True), name)
        record.password_hash, record.from_setting = password_hash, False
        record.token_generation += 1
        record.updated_at = now
        return _public(record)

    return repo.write(change)


def remove_operator(repo: Repository, name: str, now: float) -> None:
    """Remove an account: it can no longer sign in and every token it had stops working."""

    def remove(session: Session) -> None:
        record = _active(session.get(OperatorRecord, name, with_for_update=True), name)
        record.password_hash, record.from_setting = "", False
        record.token_generation += 1
        record.updated_at = record.removed_at = now

    repo.write(remove)


def _active(record: OperatorRecord | None, name: str) -> OperatorRecord:
    if record is None or record.removed_at is not None:
        raise NotFound(f"no operator {name!r}")
    return record


def list_operators(repo: Repository) -> list[Operator]:
    with repo.read() as session:
        records = session.scalars(
            select(OperatorRecord).where(OperatorRecord.removed_at.is_(None)).order_by(OperatorRecord.name)
        )
        return [_public(r) for r in records]


def sync_setting_account(repo: Repository, password: str, now: float) -> None:
    """Keep the `admin` account of older installs signing in with the admin_password setting.

    Created on first start; its hash follows the setting while the account is still `from_setting`; left
    alone once removed or given its own password.
    """
    with repo.read() as session:
        record = session.get(OperatorRecord, SETTING_ACCOUNT)
    if record is not None and (not record.from_setting or _matches(record.password_hash, password)):
        return
    password_hash = _hasher.hash(password)

    def sync(session: Session) -> None:
        current = session.get(OperatorRecord, SETTING_ACCOUNT, with_for_update=True)
        if current is None:
            session.add(
                OperatorRecord(
                    name=SETTING_ACCOUNT,
                    password_hash=password_hash,
                    from_setting=True,
                    token_generation=0,
                    created_at=now,
                    updated_at=now,
                )
            )
        elif current.from_setting:
            current.password_hash, current.updated_at = password_hash, now
            current.token_generation += 1  # the old setting's sessions end with it

    with suppress(IntegrityError):  # another process of the service created it at the same moment
        repo.write(sync)  # web processes starting at once deadlock on MariaDB as in add_operator


def sign_in(repo: Repository, name: str, password: str) -> Operator | None:
    """The account when the password is its own, else None (as slow for an unknown name as a wrong one)."""
    with repo.read() as session:
        record = session.get(OperatorRecord, name) if NAME.match(name) else None
    if record is None or record.removed_at is not None or not record.password_hash:
        _matches(_UNKNOWN, password[:MAX_PASSWORD_CHARS])
        return None
    if len(password) > MAX_PASSWORD_CHARS or not _matches(record.password_hash, password):
        return None
    return _public(record)


def operator_revocation(repo: Repository, name: str, generation: int) -> str | None:
    """Why an operator token no longer works (account removed, password changed), or None."""
    with repo.read() as session:
        record = session.get(OperatorRecord, name)
    if record is None or record.removed_at is not None:
        return f"operator {name!r} no longer exists"
    if record.token_generation != generation:
        return "the operator's password changed: sign in again"
    return None


# audit log --------------------------------------------------------------------------------------------
def record_action(
    repo: Repository,
    operator: str,
    action: str,
    now: float,
    env_id: str | None = None,
    target: str = "",
    detail: str = "",
) -> None:
    entry = AuditRecord(
        at=now, operator=operator[:200], action=action[:32], env_id=env_id, target=target[:600], detail=detail
    )
    repo.write(lambda session: session.add(entry))


def audit_entries(
    repo: Repository,
    limit: int = 100,
    before_id: int | None = None,
    env_id: str | None = None,
    operator: str | None = None,
) -> list[AuditRecord]:
    """The log, newest first; `before_id` pages back from an entry."""
    query = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(min(limit, MAX_AUDIT_ENTRIES))
    if before_id is not None:
        query = query.where(AuditRecord.id < before_id)
    if env_id:
        query = query.where(AuditRecord.env_id == env_id)
    if operator:
        query = query.where(AuditRecord.operator == operator)
    with repo.read() as session:
        return list(session.scalars(query))
