"""The Celery runner's sender (jobs/celery_runner.py): a submit after a quiet spell is its own message; a
burst of submits shares a few messages, each id sent once, none over SUBMITS_PER_MESSAGE."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from stacklab.jobs.celery_runner import SUBMITS_PER_MESSAGE, TASK, TASK_MANY, CeleryRunner


class RecordingCelery:
    """What CeleryRunner uses of a Celery app; records the messages, and can hold the broker up."""

    def __init__(self) -> None:
        self.conf = type("Conf", (), {"task_default_queue": "stacklab"})()
        self.messages: list[tuple[str, list[str]]] = []
        self.held = threading.Event()
        self.held.set()
        self.publishing = threading.Event()

    @contextlib.contextmanager
    def producer_or_acquire(self) -> Iterator[object]:
        yield object()

    def send_task(self, name: str, args: tuple[Any, ...], **options: Any) -> None:
        self.publishing.set()
        self.held.wait(10)
        ids = [args[0]] if name == TASK else list(args[0])
        assert name == TASK_MANY or len(ids) == 1
        self.messages.append((options["queue"], ids))


def sent(runner: CeleryRunner) -> None:
    with runner._changed:
        while runner._pending or runner._sending:
            runner._changed.wait(1)


def test_a_lone_submit_is_one_message_and_a_burst_shares_a_few() -> None:
    celery = RecordingCelery()
    runner = CeleryRunner(celery)  # type: ignore[arg-type]
    try:
        runner.submit("lone")
        sent(runner)
        assert celery.messages == [("stacklab", ["lone"])]

        celery.messages.clear()
        celery.publishing.clear()
        celery.held.clear()  # the broker is slow: the burst piles up behind the first message
        runner.submit("first")
        assert celery.publishing.wait(10)
        burst = [f"env-{n}" for n in range(3 * SUBMITS_PER_MESSAGE)]
        for env_id in burst:
            runner.submit(env_id)
        celery.held.set()
        sent(runner)

        ids = [env_id for _, batch in celery.messages for env_id in batch]
        assert sorted(ids) == sorted(["first", *burst])  # each once
        assert all(len(batch) <= SUBMITS_PER_MESSAGE for _, batch in celery.messages)
        assert len(celery.messages) <= 1 + 3 + 1  # the first, then full messages (and a partial one)
    finally:
        runner.close()
