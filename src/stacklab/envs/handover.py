"""The hand-over of a warm pool member to a learner: the controller's steps for pools (envs/pools.py).

When a learner's environment is about to create a stack, its pass first brings the lab's pools in line
(`sync_pool`) and takes a ready member of the same lab content, if there is one (`_take_from_pool`): in one
transaction the member's stack (provider, slot, handle, nodes, sealed key) moves to the learner's
environment, which now owns it under its own id, course, learner and history; the member is left
without a stack, due now, so it fills again in the background. Nothing is created for the learner.

The learner's environment then finishes the hand-over (`_finish_handover`, `rotate_keys` set): a suspended
stack is resumed, and the login key is rotated on every node (access/key_rotation.py): a new key pair is
made and sealed first, installed in place of the old key with whichever key the node takes, checked to
log in, and only then the old key is forgotten. Access tokens move on a generation. The lab is ready
(`HandedOver`) once the old key no longer opens it. A member whose stack vanished or failed meanwhile
gives way to an ordinary create.

Accounting: the member's transitions end its interval at the hand-over (`HandedOver`), the learner's
begin there, so the pool's node-hours stay on the member's row and a learner's on theirs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import asyncssh

from stacklab.access.key_rotation import rotate_login_key
from stacklab.access.keys import generate_keypair
from stacklab.envs import lifecycle, pools
from stacklab.envs.transitions import Journal
from stacklab.labs.schema import Lab
from stacklab.providers.base import StackState
from stacklab.secrets import Secret
from stacklab.store import pools as store
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed, Progress

if TYPE_CHECKING:
    from stacklab.envs.controller import Controller

POOL_ROOM_WAIT_S = 30.0
"""A member whose provider is full looks again after this (members never queue before learners)."""
ROTATED = "key_rotated"
"""A sealed-secrets flag: the login key is ours now, not a template's `private_key` output."""


class PoolSteps:
    """The controller's steps for warm pools (mixed into `Controller`)."""

    async def _pool_before_create(self: Controller, journal: Journal, lab: Lab) -> tuple[bool, float | None]:
        """Before a fresh create: (True, requeue) when the pools dealt with it, (False, None) to go on.

        A member gets a new stack name and only its own provider, and waits (without joining the
        learners' line) while that provider is full. A learner's environment gets its own stack name back
        and, when a member of its lab is ready, that member's stack instead of a create."""
        record = journal.record
        if record.pool is not None:
            entry = lab.provider(record.pool)
            used = (await self._blocking(self.repo.usage)).get(entry.name, 0)
            if entry.capacity is not None and used >= entry.capacity:
                return True, POOL_ROOM_WAIT_S
            record.stack_name = pools.next_stack_name(record)
            # Only its own provider: the others count as tried, so a failure there fails the fill.
            record.failed_providers = [e.name for e in lab.providers if e.name != record.pool]
            return False, None
        record.stack_name = f"sl-{record.id}"
        record.rotate_keys = False
        empty = self._sealed_empty()
        pools.sync_pool(journal.session, record.course, lab, record.lab_digest, journal.now, empty)
        if not self._take_from_pool(journal, lab):
            return False, None
        await self._save(journal)
        return True, await self._finish_handover(journal, lab)

    def _sealed_empty(self: Controller) -> bytes:
        from stacklab.envs.controller import seal

        return seal(self.vault, {})

    def _take_from_pool(self: Controller, journal: Journal, lab: Lab) -> bool:
        record, now = journal.record, journal.now
        warm = lab.warm
        if warm is None or warm.size == 0:
            return False
        fresh_after = now - warm.max_age_s
        ready = store.ready_members(journal.session, record.course, lab.id, record.lab_digest, fresh_after)
        tried = set(record.failed_providers or ())  # a launch failing over takes nothing from where it failed
        rank = {entry.name: i for i, entry in enumerate(lab.providers) if entry.name not in tried}
        # Several local hosts (envs/hosts.py): only a member on the host this lab's passes run on.
        ready = [m for m in ready if m.pool in rank and m.host == record.host]
        ready.sort(key=lambda m: rank[m.pool or ""])
        for member in ready:
            if member.capacity_held is None:  # it gave its slot back when it was suspended: take one
                entry = lab.provider(member.pool or "")
                if not self.repo.claim_slot(journal.session, entry.name, entry.capacity):
                    continue
                member.capacity_held = entry.name
            self._transplant(journal, member)
            return True
        return False

    def _transplant(self: Controller, journal: Journal, member: EnvironmentRecord) -> None:
        """Move the member's stack to the learner's environment (saved by the caller, in one commit)."""
        record, now = journal.record, journal.now
        suspended = member.observed == Observed.SUSPENDED
        for name in ("provider", "capacity_held", "stack_name", "handle", "nodes", "outputs"):
            setattr(record, name, getattr(member, name))
        record.public_key, record.sealed_secrets = member.public_key, member.sealed_secrets
        record.rotate_keys = True
        record.failed_providers = None
        record.step_started_at = now
        record.token_generation += 1
        message = f"stack {member.stack_name} on {member.provider} from warm pool member {member.id}"
        if suspended:
            journal.observe(Observed.SUSPENDED, "FromPool", message, Progress.RESUMING)
        else:
            journal.observe(Observed.CREATING, "FromPool", message, Progress.BOOTING)

        gone = Journal(member, now, journal.session)
        gone.observe(Observed.NEW, "HandedOver", f"stack {member.stack_name} to environment {record.id}")
        gone.desire(Desired.RUNNING, "PoolFill", "refilled after a hand-over")
        member.progress = Progress.QUEUED
        for name in ("provider", "capacity_held", "handle", "nodes", "outputs", "ready_at", "suspended_at"):
            setattr(member, name, None)
        member.public_key, member.sealed_secrets = "", self._sealed_empty()
        member.stack_name = pools.next_stack_name(member)  # no two rows ever name one stack (the sweep)
        lifecycle.wake(gone)
        member.updated_at = now
        member.version += 1
        journal.session.add_all(gone.entries)

    async def _finish_handover(self: Controller, journal: Journal, lab: Lab) -> float | None:
        """Resume the handed-over stack if it waited suspended, rotate the login key, then it is ready."""
        record = journal.record
        _, provider = self._provider_of(record, lab)
        handle = self._handle(record)
        status = await self.bounded(provider.status(handle), provider)
        if status.state in (StackState.ABSENT, StackState.FAILED):
            await self._remove_stack(journal, lab)
            record.rotate_keys = False
            why = status.reason or status.state.value
            journal.observe(Observed.NEW, "PoolMemberLost", f"the pooled stack is {why}", Progress.QUEUED)
            return 0.0
        resumed = record.observed == Observed.SUSPENDED
        if status.state == StackState.SUSPENDED:
            await self.bounded(provider.resume(handle), provider)
            status = await self.bounded(provider.status(handle), provider)
        if status.state != StackState.RUNNING:
            return self._poll_after(provider)
        self._record_nodes(record, status)
        if not await self._all_answer_ssh(record, wait_s=self.settings.ssh_connect_timeout_s):
            return self._poll_after(provider)
        await self._rotate_login_key(journal, lab)
        record.rotate_keys = False
        record.last_activity_at = max(record.last_activity_at, journal.now)
        took = self.clock() - (record.step_started_at or journal.now)
        self._mark_ready(journal, "HandedOver", f"from the warm pool in {took:.2f}s; login key rotated")
        self._emit("launched", took)
        if resumed:
            await self._save(journal)  # the learner may connect now; the hook runs while they do
            await self._run_hook(journal, "after_resume", lab.hooks.after_resume)
        return None

    async def _rotate_login_key(self: Controller, journal: Journal, lab: Lab) -> None:
        """A new key pair, sealed (and saved) before any node gets it; installed; then the only one."""
        from stacklab.envs.controller import seal, unseal

        record = journal.record
        secrets = unseal(self.vault, record.sealed_secrets)
        if "next_private_key" not in secrets:
            pair = generate_keypair(f"stacklab-{record.id}")
            secrets.update(next_private_key=pair.private.reveal(), next_public_key=pair.public)
            record.sealed_secrets = seal(self.vault, secrets)
            await self._save(journal)  # a crash from here on finds the new key and finishes with it
        old = self.targets(record, lab)
        new_key = Secret(secrets["next_private_key"])
        new = {name: replace(target, private_key=new_key) for name, target in old.items()}
        old_public = asyncssh.import_private_key(secrets["private_key"]).export_public_key().decode()
        timeout_s = self.settings.ssh_connect_timeout_s
        await rotate_login_key(old, new, secrets["next_public_key"], old_public, timeout_s)
        secrets["private_key"] = secrets.pop("next_private_key")
        record.public_key = secrets.pop("next_public_key")
        secrets[ROTATED] = "1"
        record.sealed_secrets = seal(self.vault, secrets)
        journal.note("keys", "login", "KeyRotated", "the pooled stack's login key was replaced on every node")
