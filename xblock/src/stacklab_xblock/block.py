"""The stacklab XBlock: a lab in a course unit, graded through the runtime."""

from __future__ import annotations

import logging
import os

from web_fragments.fragment import Fragment
from xblock.core import XBlock
from xblock.exceptions import JsonHandlerError
from xblock.fields import Boolean, Float, Scope, String
from xblock.scorable import ScorableXBlockMixin, Score
from xblock.utils.resources import ResourceLoader
from xblock.utils.studio_editable import StudioEditableXBlockMixin
from xblock.validation import Validation, ValidationMessage

from stacklab_xblock import olx
from stacklab_xblock.client import ServiceConfig, ServiceError, StacklabClient

log = logging.getLogger(__name__)

SETTINGS_ENV = {
    "service_url": "STACKLAB_XBLOCK_SERVICE_URL",
    "lms_key": "STACKLAB_XBLOCK_LMS_KEY",
    "lms_secret": "STACKLAB_XBLOCK_LMS_SECRET",
    "course": "STACKLAB_XBLOCK_COURSE",
}
UNREACHABLE = (
    "The lab service cannot be reached right now, so your lab cannot open. Reload this page in a minute; "
    "if this persists, tell the course staff."
)
NOT_CONFIGURED = "This lab is not set up yet: the course staff must configure the stacklab service."
STAFF_VIEW = (
    "Staff view: this is the learner's own lab, read-only. You can watch it but not type, check or reset."
)
NOT_OPENED = "This learner has not opened this lab yet, so there is nothing to show."
ANONYMOUS_ID = "edx-platform.anonymous_user_id"
IS_STAFF = "edx-platform.user_is_staff"
SCRIPT = "static/js/stacklab.js"
STYLE = "static/css/stacklab.css"
loader = ResourceLoader(__name__)


def _fmt(number: float) -> str:
    return f"{number:g}"


@XBlock.needs("user")
@XBlock.wants("settings")
class StacklabXBlock(StudioEditableXBlockMixin, ScorableXBlockMixin, XBlock):
    """A stacklab lab in a course unit. The lab itself is defined once in the service (by its id)."""

    display_name = String(display_name="Display name", default="Lab", scope=Scope.settings)
    lab = String(
        display_name="Lab id",
        help="The id of a lab the stacklab service offers",
        default="",
        scope=Scope.settings,
    )
    weight = Float(
        display_name="Weight", help="Maximum score of this unit", default=1.0, scope=Scope.settings
    )
    node = String(display_name="Node opened first", default="", scope=Scope.settings)
    read_only = Boolean(display_name="Read-only", default=False, scope=Scope.settings)
    background = Boolean(
        display_name="Launch in the background",
        help="Launch without showing a terminal",
        default=False,
        scope=Scope.settings,
    )
    check_label = String(display_name="Check button label", default="Check my work", scope=Scope.settings)

    environment = String(default="", scope=Scope.user_state)
    score_fraction = Float(default=None, scope=Scope.user_state)
    """The counted score as a fraction of the lab's maximum (0..1); None before the first check."""
    last_checked = String(default="", scope=Scope.user_state)

    has_score = True
    public_dir = "static"
    """What the runtime may serve from the package (`local_resource_url`): the script and the style sheet."""
    icon_class = "problem"
    block_settings_key = "stacklab"
    """The bucket of XBLOCK_SETTINGS the runtime's settings service gives this block."""
    editable_fields = (
        "display_name",
        "lab",
        "weight",
        "node",
        "read_only",
        "background",
        "check_label",
    )

    # ---- configuration ---------------------------------------------------------------------------------
    def _settings(self) -> dict:
        bucket: dict = {}
        service = self.runtime.service(self, "settings")
        if service is not None:
            try:
                bucket = dict(service.get_settings_bucket(self) or {})
            except Exception:  # noqa: BLE001 - a runtime without settings for us
                bucket = {}
        for name, var in SETTINGS_ENV.items():
            if not bucket.get(name) and os.environ.get(var):
                bucket[name] = os.environ[var]
        return bucket

    def _client(self) -> StacklabClient:
        s = self._settings()
        return StacklabClient(
            ServiceConfig(s.get("service_url", ""), s.get("lms_key", ""), s.get("lms_secret", ""))
        )

    def _course_id(self) -> str:
        course = getattr(self.runtime, "course_id", None) or getattr(
            self.scope_ids.usage_id, "course_key", None
        )
        if course:
            return str(course)
        return str(self._settings().get("course") or "workbench")

    def _user(self):  # type: ignore[no-untyped-def]
        """The runtime's current user (an XBlockUser), or None in a runtime without the user service."""
        try:
            return self.runtime.service(self, "user").get_current_user()
        except Exception:  # noqa: BLE001 - a runtime without the user service
            return None

    def _learner(self) -> str:
        """The learner whose lab this is: the runtime's anonymous id for this course (the masqueraded
        learner's when staff masquerade as a specific learner, as the LMS binds the block to that learner)."""
        user = self._user()
        anonymous = user.opt_attrs.get(ANONYMOUS_ID) if user is not None else None
        anonymous = anonymous or getattr(self.runtime, "anonymous_student_id", None)
        return str(anonymous or self.scope_ids.user_id)

    def _is_staff(self) -> bool:
        user = self._user()
        if user is not None and IS_STAFF in user.opt_attrs:
            return bool(user.opt_attrs.get(IS_STAFF))
        return bool(getattr(self.runtime, "user_is_staff", False))

    def _masquerading(self) -> bool:
        """Whether a staff member is viewing the unit as a specific learner.

        The LMS (edx-platform's masquerade) then binds the block to the learner: the user service holds the
        learner's Django user with `real_user` set to the staff member, the anonymous id is the learner's and
        `user_is_staff` is False. No public XBlock API says more, so this reads the service's user.
        """
        service = self.runtime.service(self, "user") if self.runtime else None
        user = getattr(service, "_django_user", None)
        real = getattr(user, "real_user", None)
        return real is not None and getattr(real, "id", None) != getattr(user, "id", None)

    def max_score(self) -> float:
        return self.weight

    def _score_text(self) -> str:
        earned = (self.score_fraction or 0.0) * self.weight
        return (
            f"{_fmt(earned)} / {_fmt(self.weight)}"
            if self.score_fraction is not None
            else f"not checked yet (out of {_fmt(self.weight)})"
        )

    # ---- learner view ----------------------------------------------------------------------------------
    def student_view(self, context=None) -> Fragment:
        """The unit: the lab page (or why it cannot open), the check bar and, for staff, the course panel.

        The markup is templates/student.html; the script and style are files the runtime serves from this
        package (`public_dir`), so the page loads them by URL and only the initializer call is inline.
        """
        frag = Fragment(loader.render_django_template("templates/student.html", self._view_context()))
        frag.add_css_url(self.runtime.local_resource_url(self, STYLE))
        frag.add_javascript_url(self.runtime.local_resource_url(self, SCRIPT))
        frag.initialize_js("StacklabXBlock")
        return frag

    def _view_context(self) -> dict:
        """What the template shows for this learner (staff masquerading see the learner's lab read-only)."""
        page: dict = {"lab": self.lab, "title": self.display_name, "is_staff": self._is_staff()}
        client = self._client()
        problems = client.config.problems() + ([] if self.lab else ["no lab id set"])
        if problems:
            log.warning("stacklab XBlock not configured: %s", "; ".join(problems))
            return {**page, "not_configured": NOT_CONFIGURED}
        if self._masquerading():
            return {**page, "staff_view": STAFF_VIEW, **self._observed(client)}
        return {
            **page,
            **self._launched(client),
            "can_check": True,
            "check_label": self.check_label,
            "score_text": self._score_text(),
        }

    def _launched(self, client: StacklabClient) -> dict:
        """Launch or resume this learner's lab (ahead of the first keystroke): its page, or why not."""
        try:
            launched = client.launch(
                self._course_id(), self.lab, self._learner(), node=self.node, read_only=self.read_only
            )
        except ServiceError as exc:
            log.warning("stacklab launch failed: %s", exc)
            return {"error": UNREACHABLE if exc.unreachable else f"The lab could not open: {exc}"}
        if self.environment != launched["environment"]["id"]:
            self.environment = launched["environment"]["id"]
            self.save()  # views do not save fields by themselves
        if self.background:
            return {"background": True, "progress": str(launched["environment"].get("progress", ""))}
        return {"lab_url": launched["lab_url"]}

    def _observed(self, client: StacklabClient) -> dict:
        """Staff masquerading as a learner: that learner's lab, read-only; nothing is launched for them."""
        try:
            watched = client.observe(self._course_id(), self.lab, self._learner(), node=self.node)
        except ServiceError as exc:
            if exc.status == 404:
                return {"not_opened": NOT_OPENED}
            log.warning("stacklab observe failed: %s", exc)
            return {"error": UNREACHABLE if exc.unreachable else f"The lab cannot be shown: {exc}"}
        return {"lab_url": watched["lab_url"]}

    @XBlock.json_handler
    def check(self, data, suffix=""):
        """Run the lab's checks for this learner (as the LMS, with its signed JWT) and publish the grade."""
        if self._masquerading():
            raise JsonHandlerError(403, "Read-only: staff viewing a learner's lab cannot run their checks.")
        client = self._client()
        try:
            if not self.environment:  # the unit could not open the lab (yet): find or launch it now
                self.environment = client.launch(self._course_id(), self.lab, self._learner())["environment"][
                    "id"
                ]
            report = client.run_checks(self.environment)
        except ServiceError as exc:
            if exc.unreachable:
                return {"error": UNREACHABLE}
            if exc.status == 404:
                return {"error": "Your lab is gone (it had not been used for a long time): reload the page."}
            return {"error": f"The check could not run: {exc}"}
        fraction = self._fraction(report.get("counted_score"), report.get("max_score"))
        new_value = olx.grade_to_publish(
            self.score_fraction, fraction, str(report.get("score_policy") or "best")
        )
        if new_value is not None:
            self.score_fraction = new_value
            self.last_checked = str(report.get("score", ""))
            self.publish_grade()
        results = report.get("results", [])
        return {
            "score_text": self._score_text(),
            "value": (self.score_fraction or 0.0) * self.weight,
            "max_value": self.weight,
            "passed": sum(1 for r in results if r.get("passed")),
            "total": len(results),
            "results": [
                {"name": r.get("name"), "passed": r.get("passed"), "hint": r.get("hint", "")} for r in results
            ],
        }

    @staticmethod
    def _fraction(counted: object, maximum: object) -> float:
        top = float(maximum or 0.0)  # type: ignore[arg-type]
        return min(max(float(counted or 0.0) / top, 0.0), 1.0) if top > 0 else 0.0  # type: ignore[arg-type]

    @XBlock.json_handler
    def staff_environments(self, data, suffix=""):
        """Every environment of this course with its state (course staff only)."""
        if not self._is_staff():
            raise JsonHandlerError(403, "Only course staff may list the course's labs.")
        try:
            envs = self._client().course_environments(self._course_id())
        except ServiceError as exc:
            return {"error": UNREACHABLE if exc.unreachable else str(exc)}
        keys = ("id", "learner", "lab", "desired", "observed", "progress", "message")
        return {"environments": [{k: e.get(k) for k in keys} for e in envs]}

    # ---- grading (ScorableXBlockMixin: rescore and override) -------------------------------------------
    def has_submitted_answer(self):
        return self.score_fraction is not None

    def get_score(self):
        return Score((self.score_fraction or 0.0) * self.weight, self.weight)

    def set_score(self, score):
        """Keep a score (an instructor's override, or a rescore): `raw_earned` out of `raw_possible`."""
        self.score_fraction = score.raw_earned / score.raw_possible if score.raw_possible else 0.0

    def calculate_score(self):
        """The score the lab counts now (best or latest attempt, as the lab says), read from the service
        without running the checks again; the kept score when the lab has no attempt to tell."""
        if not self.environment:
            return self.get_score()
        latest = self._client().latest_checks(self.environment)
        if latest.get("counted_score") is None:
            return self.get_score()
        fraction = self._fraction(latest["counted_score"], latest.get("max_score"))
        return Score(fraction * self.weight, self.weight)

    def rescore(self, only_if_higher):
        """Instructor rescore: recompute from the service, keep it (unless lower and `only_if_higher`), publish.

        Like ScorableXBlockMixin.rescore, but the block's own state follows the new score too.
        """
        if not self.has_submitted_answer():
            raise ValueError(f"Cannot rescore an unanswered lab: {self.scope_ids.usage_id}")
        try:
            new = self.calculate_score()
        except ServiceError as exc:
            raise ValueError(f"Cannot rescore: {exc}") from exc
        if not (only_if_higher and new.raw_earned <= self.get_score().raw_earned):
            self.set_score(new)
        self._publish_grade(self.get_score(), only_if_higher)

    def publish_grade(self):
        """Publish the kept score (the LMS calls this after an instructor's override)."""
        self._publish_grade(self.get_score())

    # ---- Studio (the form and its save handler come from StudioEditableXBlockMixin) ------------------------
    def _values(self, data: object = None) -> dict:
        """The OLX values of `data` (this block, or the mixin's preview of an edit before it is saved)."""
        source = self if data is None else data
        return {name: getattr(source, name) for name in olx.DEFAULTS}

    def validate_field_data(self, validation: Validation, data: object) -> None:
        """Our rules (olx.validate) for Studio's validation panel and for the form's Save.

        The mixin refuses a save on any message, while a warning (weight 0, an empty label) must not stop an
        author: on save (`data` is the mixin's preview, not this block) only the errors are added.
        """
        saving = data is not self
        for problem in olx.validate(self._values(data)):
            if problem.level == "error":
                validation.add(
                    ValidationMessage(ValidationMessage.ERROR, f"{problem.field}: {problem.message}")
                )
            elif not saving:
                validation.add(
                    ValidationMessage(ValidationMessage.WARNING, f"{problem.field}: {problem.message}")
                )

    # ---- OLX -------------------------------------------------------------------------------------------
    @classmethod
    def parse_xml(cls, node, runtime, keys):
        block = runtime.construct_xblock_from_class(cls, keys)
        values, problems = olx.parse_attributes({k: v for k, v in node.items()})
        for problem in problems:
            log.warning("<stacklab> OLX %s: %s", problem.field, problem.message)
        for name, value in values.items():
            setattr(block, name, value)
        return block

    def add_xml_to_node(self, node):
        node.tag = self.xml_element_name()
        node.set("xblock-family", self.entry_point)
        values = {name: getattr(self, name) for name in olx.DEFAULTS if self.fields[name].is_set_on(self)}
        values["lab"] = self.lab
        for name, text in olx.export_attributes(values).items():
            node.set(name, text)

    @staticmethod
    def workbench_scenarios():
        return [
            (
                "stacklab: hello lab",
                '<vertical_demo><stacklab lab="hello-lab" weight="3" display_name="Hello, lab"/></vertical_demo>',
            ),
            (
                "stacklab: hello lab in the background",
                '<vertical_demo><stacklab lab="hello-lab" background="true" check_label="Check"/></vertical_demo>',
            ),
            (
                "stacklab: hello lab, read-only",
                (
                    '<vertical_demo><stacklab lab="hello-lab" read_only="true" node="main" '
                    'display_name="Watch your lab"/></vertical_demo>'
                ),
            ),
        ]
