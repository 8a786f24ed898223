"""Core types shared by every layer: the states of an environment."""

from __future__ import annotations

import enum


class Desired(enum.StrEnum):
    """What should be: set by learners, operators and policies."""

    RUNNING = "running"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class Observed(enum.StrEnum):
    """What is, as the controller last saw it."""

    NEW = "new"
    CREATING = "creating"
    RUNNING = "running"
    SUSPENDED = "suspended"
    DELETED = "deleted"
    FAILED = "failed"


class Progress(enum.StrEnum):
    """Launch progress shown to the learner."""

    QUEUED = "queued"
    CREATING = "creating"
    BOOTING = "booting"
    READY = "ready"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    RESUMING = "resuming"
    DELETED = "deleted"
    FAILED = "failed"
