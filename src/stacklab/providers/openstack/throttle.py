"""Writes to Heat sent again, a bounded number of times, while Heat answers 429 or 503.

A cloud that rate-limits (429) or is briefly overloaded (503, often from a load balancer in front of
heat-api) says so with a `Retry-After` header. A write (create, suspend, resume, delete) that met one is
sent again after that long, never sooner; without the header after an exponential backoff. Every wait is
jittered upwards (up to half again), so that the burst which was turned away does not come back in step,
and capped at `max_wait_s`. After `retries` further refusals, or when Heat asks for a longer wait than the
cap, the write fails with a `RateLimited` error that names the answer: the controller retries the step
later with its own backoff, and the operator reads why. A 503 without `Retry-After` to every attempt is
not rate-limiting but an outage (heat-api answers so when Keystone is down): it fails as the cloud being
unavailable, with Heat's own words.

The wait happens in the write's thread: holding one of the few write slots while Heat asks for patience
sends fewer writes meanwhile, which is what Heat asked for. Reads (the shared poll) are not retried here: a
failed poll is simply followed by the next one.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from openstack import exceptions as sdk

from stacklab.errors import TransientProviderError

log = logging.getLogger(__name__)

BUSY = {429: "Too Many Requests", 503: "Service Unavailable"}
"""The answers that ask a client to come back later."""


def retry_after_s(response: Any) -> float | None:
    """Seconds the `Retry-After` header asks for (a number of seconds or an HTTP date), None without one."""
    value = (getattr(response, "headers", None) or {}).get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class WriteThrottle:
    """Sends one write, again while Heat answers 429/503, within the bounds of one provider's settings."""

    def __init__(self, cloud: str, *, retries: int, backoff_s: float, max_wait_s: float) -> None:
        self.cloud = cloud
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s

    def send(self, doing: str, call: Callable[[], Any], *, gone_ok: bool = False) -> tuple[Any, float]:
        """`call`'s result, and when (time.monotonic()) the attempt Heat took went out: what the operation
        is timed from (`Durations`), not the refused attempts and the waits before it. A raw response (the
        proxy's `post`, `delete`) is raised as openstacksdk's HttpException unless it succeeded;
        `gone_ok`: a 404 answers None instead."""
        attempt = 0
        while True:
            sent = time.monotonic()
            try:
                return self._once(call, gone_ok), sent
            except sdk.HttpException as exc:
                if exc.status_code not in BUSY:
                    raise
                wait = self._wait_s(doing, attempt, exc)  # raises once the bound is exhausted
            attempt += 1
            log.warning(
                "heat asked to come back later",
                extra={"cloud": self.cloud, "doing": doing, "attempt": attempt, "wait_s": round(wait, 3)},
            )
            time.sleep(wait)

    @staticmethod
    def _once(call: Callable[[], Any], gone_ok: bool) -> Any:
        result = call()
        if isinstance(result, requests.Response):
            if gone_ok and result.status_code == 404:
                return None
            sdk.raise_from_response(result)
        return result

    def _wait_s(self, doing: str, attempt: int, exc: sdk.HttpException) -> float:
        """How long to wait before the next attempt; raises when the bound is exhausted."""
        status = int(exc.status_code or 0)
        asked = retry_after_s(exc.response)
        answer = f"Heat answered {status} {BUSY[status]}" + (
            f" (Retry-After {asked:g} s)" if asked is not None else ""
        )
        if attempt >= self.retries:
            if status == 503 and asked is None:  # not a request to slow down: Heat (or what it needs) is down
                raise exc
            raise self._exhausted(
                doing, f"{answer} to {attempt + 1} attempts in a row (write_retries is {self.retries})"
            ) from exc
        if asked is not None and asked > self.max_wait_s:
            raise self._exhausted(
                doing, f"{answer}, longer than write_backoff_max_s ({self.max_wait_s:g} s)"
            ) from exc
        backoff = self.backoff_s * 2**attempt
        return min(self.max_wait_s, max(asked or 0.0, backoff) * random.uniform(1.0, 1.5))

    def _exhausted(self, doing: str, what: str) -> TransientProviderError:
        return TransientProviderError(
            f"cloud {self.cloud!r}: {doing}: {what}; the cloud is rate-limiting or overloaded, "
            "the step is retried later",
            reason="RateLimited",
        )
