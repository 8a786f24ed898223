"""`stacklab lab test`: prove, before any learner sees it, that a lab's checks mean what its author thinks.

The procedure launches the lab for a throwaway learner and expects every check to fail on the fresh lab;
it runs each check's `solve` script (what a learner would do) and expects every check to pass; it suspends
and resumes the lab and expects them to pass still (the learner's work survives); then it deletes the lab.
Anything else is a *surprise*, named after its check or step, as is a hook that failed. The lab is driven
through the Environments service like any learner's, so the test exercises the real provider, hooks and
check runner.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stacklab.access.ssh import Target
from stacklab.checks.runner import CheckResult
from stacklab.checks.scripts import run_script
from stacklab.envs.service import Environments
from stacklab.errors import AccessError
from stacklab.labs.schema import Check, Lab
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed

COURSE = "lab-test"
"""The course every lab test's environment belongs to (operators see them apart from learners')."""
OUTPUT_LIMIT = 2000


@dataclass
class Step:
    """One lifecycle step: launch, suspend, resume or delete."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class CheckRow:
    """One check through the test: its result at each stage ("pass", "fail", "-" when not reached) and
    its solve's outcome ("ok", "failed", "none" without a solve script)."""

    name: str
    node: str
    before_solve: str = "-"
    solve: str = "-"
    after_solve: str = "-"
    after_resume: str = "-"


@dataclass
class LabTestReport:
    lab: str
    env: str
    kept: bool = False
    steps: list[Step] = field(default_factory=list)
    checks: list[CheckRow] = field(default_factory=list)
    surprises: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.surprises

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


Progress = Callable[[str], None]


class LabTest:
    """One run of the procedure on one lab file (see the module docstring)."""

    def __init__(
        self,
        environments: Environments,
        lab_path: str | Path,
        *,
        keep: bool = False,
        solve_timeout_s: float = 300.0,
        progress: Progress | None = None,
    ) -> None:
        self.environments = environments
        self.lab_path = lab_path
        self.keep = keep
        self.solve_timeout_s = solve_timeout_s
        self.progress = progress or (lambda _message: None)

    async def run(self) -> LabTestReport:
        learner = f"author-{secrets.token_hex(4)}"
        record = self.environments.launch(self.lab_path, learner, COURSE)
        lab = self.environments.lab_of(record)
        report = LabTestReport(lab.id, record.id, kept=self.keep)
        report.checks = [CheckRow(check.name, check.node) for check in lab.checks]
        try:
            await self._procedure(report, record, lab)
        finally:
            if not self.keep:
                await self._step(report, record.id, "delete", Desired.DELETED, Observed.DELETED, lab)
            report.surprises += self._hook_surprises(record.id)
        return report

    def _hook_surprises(self, env_id: str) -> list[str]:
        """Hooks that failed or could not run: the controller records them and goes on (never fatal for a
        learner), but an author wants to know."""
        record = self.environments.resolve(env_id)
        return [
            f"hook {entry.to_state}: {entry.reason}: {_clip(entry.message)}".rstrip(": ")
            for entry in self.environments.history(record)
            if entry.kind == "hook" and entry.reason != "HookSucceeded"
        ]

    async def _procedure(self, report: LabTestReport, record: EnvironmentRecord, lab: Lab) -> None:
        if not await self._step(report, record.id, "launch", None, Observed.RUNNING, lab):
            return
        await self._checks(report, lab, "before_solve", expect_pass=False)
        await self._solve(report, record.id, lab)
        await self._checks(report, lab, "after_solve", expect_pass=True)
        if not await self._step(report, record.id, "suspend", Desired.SUSPENDED, Observed.SUSPENDED, lab):
            return
        if not await self._step(report, record.id, "resume", Desired.RUNNING, Observed.RUNNING, lab):
            return
        await self._checks(report, lab, "after_resume", expect_pass=True)

    async def _step(
        self,
        report: LabTestReport,
        env_id: str,
        name: str,
        desired: Desired | None,
        expected: Observed,
        lab: Lab,
    ) -> bool:
        """Ask for `desired` (None: the launch already did), drive it home, and record how it went."""
        self.progress(f"{name}...")
        started = time.monotonic()
        if desired is not None:
            self.environments.request(env_id, desired, f"LabTest{name.capitalize()}")
        done = await self.environments.drive(env_id, lab.timeouts.launch_s)
        seconds = round(time.monotonic() - started, 1)
        ok = done.observed == expected
        detail = "" if ok else _why_not(done, expected, lab.timeouts.launch_s)
        report.steps.append(Step(name, ok, seconds, detail))
        if not ok:
            report.surprises.append(f"step {name}: {detail}")
        return ok

    async def _checks(self, report: LabTestReport, lab: Lab, stage: str, expect_pass: bool) -> None:
        self.progress(f"checks ({stage.replace('_', ' ')})...")
        results = (await self.environments.check(report.env)).results
        for row, result in zip(report.checks, results, strict=True):
            setattr(row, stage, "pass" if result.passed else "fail")
            already_reported = stage == "after_resume" and row.after_solve != "pass"
            if result.passed != expect_pass and not already_reported:
                report.surprises.append(_check_surprise(row, result, stage))

    async def _solve(self, report: LabTestReport, env_id: str, lab: Lab) -> None:
        """Each check's solve script in the lab's order (a later one may build on an earlier one)."""
        self.progress("solve scripts...")
        record = self.environments.resolve(env_id)
        targets = self.environments.controller.targets(record, lab)
        for row, check in zip(report.checks, lab.checks, strict=True):
            if check.solve is None:
                row.solve = "none"
                continue
            problem = await self._solve_one(check, targets.get(check.node))
            row.solve = "ok" if problem is None else "failed"
            if problem is not None:
                report.surprises.append(f"check {check.name}: its solve script {problem}")

    async def _solve_one(self, check: Check, target: Target | None) -> str | None:
        """Why the check's solve failed, or None when it exited 0."""
        if target is None or check.solve is None:
            return f"could not run: node {check.node} has no address"
        try:
            result = await run_script(target, check.solve, self.solve_timeout_s)
        except AccessError as exc:
            return f"could not run: {exc}"
        output = _clip(result.stdout + result.stderr)
        if result.timed_out:
            return f"timed out after {self.solve_timeout_s:g}s: {output}".rstrip(": ")
        if result.exit_status != 0:
            return f"exited {result.exit_status}: {output}".rstrip(": ")
        return None


def _check_surprise(row: CheckRow, result: CheckResult, stage: str) -> str:
    output = _clip(result.output)
    said = f" (output: {output})" if output else ""
    if stage == "before_solve":
        return f"check {row.name}: passed before its solve ran (a learner scores without doing the task)"
    if stage == "after_solve":
        cause = {
            "ok": "its solve script ran",
            "failed": "its solve script failed",
        }.get(row.solve, "every solve script ran (it has none)")
        return f"check {row.name}: failed after {cause}{said}"
    return f"check {row.name}: passed before suspend but failed after resume (state lost?){said}"


def _why_not(record: EnvironmentRecord, expected: Observed, timeout_s: float) -> str:
    if record.observed == Observed.FAILED:
        return f"failed: {record.last_reason}: {record.last_error}"
    return f"still {record.observed} (wanted {expected}) after {timeout_s:g}s"


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= OUTPUT_LIMIT else "..." + text[-OUTPUT_LIMIT:]
