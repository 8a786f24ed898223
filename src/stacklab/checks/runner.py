"""Run a lab's checks on their nodes and score them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from stacklab.access.ssh import Target
from stacklab.checks.scripts import run_script
from stacklab.errors import AccessError
from stacklab.labs.schema import Check

OUTPUT_LIMIT = 4000


@dataclass(frozen=True)
class CheckResult:
    name: str
    node: str
    passed: bool
    weight: float
    output: str
    hint: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def run_check(check: Check, target: Target) -> CheckResult:
    """One check: exit status 0 passes; a timeout or an unreachable node fails with a reason."""
    try:
        result = await run_script(target, check.script, check.timeout_s)
    except AccessError as exc:
        return CheckResult(
            check.name, check.node, False, check.weight, f"node unreachable: {exc}", check.hint
        )
    output = (result.stdout + result.stderr).strip()[-OUTPUT_LIMIT:]
    if result.timed_out:
        output = f"timed out after {check.timeout_s:g}s\n{output}".strip()
    passed = result.exit_status == 0 and not result.timed_out
    return CheckResult(check.name, check.node, passed, check.weight, output, "" if passed else check.hint)


async def run_checks(checks: Sequence[Check], targets: Mapping[str, Target]) -> list[CheckResult]:
    """All checks in parallel (they are independent), results in the lab's order."""
    return list(await asyncio.gather(*(run_check(check, targets[check.node]) for check in checks)))


def weighted_score(results: Sequence[CheckResult]) -> float:
    return sum(result.weight for result in results if result.passed)


def counted_score(scores: Sequence[float], policy: Literal["best", "latest"]) -> float | None:
    """The score that counts over all attempts: the best one, or the latest, as the lab chooses."""
    if not scores:
        return None
    return max(scores) if policy == "best" else scores[-1]
