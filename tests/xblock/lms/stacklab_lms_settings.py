"""Workbench settings standing in for an Open edX LMS (used by tests/xblock/test_workbench.py).

Runs inside the workbench's venv (Django 4.2, XBlock 6), not the project's. Two things an LMS has and the
plain workbench lacks:
- XBLOCK_SETTINGS["stacklab"]: the block's configuration through the runtime's settings service (from the
  JSON in STACKLAB_TEST_XBLOCK_SETTINGS);
- a user service shaped like edx-platform's DjangoXBlockUserService, masquerade included. `?student=NAME` is a
  learner, `?student=staff` course staff, `?student=staff~NAME` staff masquerading as learner NAME. As in the
  LMS, a masquerade binds the block to NAME: NAME's anonymous id, user_is_staff False, and a Django user whose
  `real_user` is the staff member (edx-platform's courseware/masquerade.py, setup_masquerade).
"""

import json
import os
from types import SimpleNamespace

from workbench.settings import *  # noqa: F403
from xblock.reference.user_service import UserService, XBlockUser

XBLOCK_SETTINGS = {"stacklab": json.loads(os.environ["STACKLAB_TEST_XBLOCK_SETTINGS"])}
WORKBENCH = {
    **WORKBENCH,  # noqa: F405
    "services": {**WORKBENCH["services"], "user": "stacklab_lms_settings.LmsUserService"},  # noqa: F405
}

# The workbench's publish() logs each event (grades included): keep them where a test can read them.
LOGGING["handlers"]["events"] = {  # noqa: F405
    "level": "INFO",
    "class": "logging.FileHandler",
    "filename": "var/events.log",
}
LOGGING["loggers"]["workbench.runtime"] = {"handlers": ["events"], "level": "INFO", "propagate": False}  # noqa: F405


class LmsUserService(UserService):
    """The runtime's user, by the workbench's student id (set as `runtime` by the workbench)."""

    runtime = None

    def _names(self):  # type: ignore[no-untyped-def]
        real, _, learner = str(self.runtime.user_id).partition("~")
        return real, learner or real

    @property
    def _django_user(self):  # type: ignore[no-untyped-def]
        real, who = self._names()
        user = SimpleNamespace(id=who, username=who)
        if who != real:
            user.real_user = SimpleNamespace(id=real, username=real)
        return user

    def get_current_user(self):  # type: ignore[no-untyped-def]
        _real, who = self._names()
        user = XBlockUser(is_current_user=True, emails=[f"{who}@example.com"], full_name=who)
        user.opt_attrs.update(
            {
                "edx-platform.anonymous_user_id": f"anon-{who}",
                "edx-platform.user_id": who,
                "edx-platform.username": who,
                "edx-platform.user_is_staff": who == "staff",
                "edx-platform.user_role": "staff" if who == "staff" else "student",
            }
        )
        return user

    def get_user_by_anonymous_id(self, uid=None):  # type: ignore[no-untyped-def]
        """As edx-platform's: the user behind an anonymous id (here `anon-NAME` is NAME), None if unknown."""
        if not str(uid or "").startswith("anon-"):
            return None
        return SimpleNamespace(username=str(uid)[len("anon-") :])
