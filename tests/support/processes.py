"""Stopping the processes a test or benchmark started: SIGTERM to all, then SIGKILL to whatever has not
exited after a grace period (each reaped, so that no zombie keeps a pid alive)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterable


def stop_all(processes: Iterable[subprocess.Popen[bytes]], grace_s: float = 15.0) -> None:
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
