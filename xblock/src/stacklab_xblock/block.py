"""The stacklab XBlock: a lab in a course unit, graded through the runtime."""

from __future__ import annotations

import logging
import os
import threading
import urllib.parse

from web_fragments.fragment import Fragment
from xblock.core import XBlock
from xblock.exceptions import JsonHandlerError
from xblock.fields import Boolean, Float, Scope, String
from xblock.scorable import ScorableXBlockMixin, Score
from xblock.utils.resources import ResourceLoader
from xblock.utils.studio_editable import StudioEditableXBlockMixin
from xblock.validation import Validation, ValidationMessage

from stacklab_xblock import messages, olx
from stacklab_xblock.client import ServiceConfig, ServiceError, StacklabClient

log = logging.getLogger(__name__)

SETTINGS_ENV = {
    "service_url": "STACKLAB_XBLOCK_SERVICE_URL",
    "lms_key": "STACKLAB_XBLOCK_LMS_KEY",
    "lms_secret": "STACKLAB_XBLOCK_LMS_SECRET",
    "course": "STACKLAB_XBLOCK_COURSE",
    "course_name": "STACKLAB_XBLOCK_COURSE_NAME",
}
NOT_CONFIGURED = "This lab is not set up yet: the course staff must configure the stacklab service."
STAFF_VIEW = (
    "Staff view: this is the learner's own lab, read-only. You can watch it but not type, check or reset."
)
NOT_OPENED = "This learner has not opened this lab yet, so there is nothing to show."
ANONYMOUS_ID = "edx-platform.anonymous_user_id"
IS_STAFF = "edx-platform.user_is_staff"
COURSE_DEPTH = 10
MAX_NAMES = 2000
"""Most learner names the course view is given (in its URL's fragment): a large class shows ids past it."""
MAX_GRANT_HOURS = 10000
"""The most hours one grant gives (the service's limit too)."""
"""How far up the unit's parents the course block is looked for (course > chapter > sequence > unit)."""
SCRIPT = "static/js/stacklab.js"
STYLE = "static/css/stacklab.css"
loader = ResourceLoader(__name__)


def _fmt(number: float) -> str:
    return f"{number:g}"


def _lab_preview(lab: dict) -> str:
    """One lab's preview (lab_preview.html). `checks` None: an older service whose lab list does not give
    them (the preview says so)."""
    return loader.render_django_template(
        "templates/lab_preview.html", {"lab": {**lab, "checks": lab.get("checks")}}
    )


def embedded(lab_url: str, course_name: str = "") -> str:
    """The lab page in its embedded mode (`embedded=1`: no Check or score of its own; the unit grades), with
    the course's display name to show instead of its id (URL-encoded; the page shows it as text only)."""
    base, hash_mark, fragment = lab_url.partition("#")
    query = {"embedded": "1", **({"course_name": course_name} if course_name else {})}
    return f"{base}{'&' if '?' in base else '?'}{urllib.parse.urlencode(query)}{hash_mark}{fragment}"


@XBlock.needs("user")
@XBlock.wants("settings")
class StacklabXBlock(StudioEditableXBlockMixin, ScorableXBlockMixin, XBlock):
    """A stacklab lab in a course unit. The lab itself is defined once in the service (by its id)."""

    display_name = String(
        display_name="Display name",
        help="The unit's title, shown to learners above the lab",
        default="Lab",
        scope=Scope.settings,
    )
    lab = String(
        display_name="Lab",
        help="The lab the stacklab service offers for this unit (the list comes from the service)",
        default="",
        scope=Scope.settings,
        values_provider=lambda block: block._lab_choices(),
    )
    weight = Float(
        display_name="Weight",
        help="Maximum score of this unit; 0 means the lab does not count towards the grade",
        default=1.0,
        scope=Scope.settings,
    )
    node = String(
        display_name="Node opened first",
        help="The machine the lab page opens first (one of the chosen lab's nodes); empty: the lab's first",
        default="",
        scope=Scope.settings,
        values_provider=lambda block: block._node_choices(),
    )
    read_only = Boolean(
        display_name="Read-only",
        help="Learners watch the lab but cannot type; the unit does not check or grade",
        default=False,
        scope=Scope.settings,
    )
    background = Boolean(
        display_name="Launch in the background",
        help="Launch without showing a terminal",
        default=False,
        scope=Scope.settings,
    )
    check_label = String(
        display_name="Check button label",
        help="The words on the button that checks the learner's work and records the grade",
        default="Check my work",
        scope=Scope.settings,
    )

    environment = String(default="", scope=Scope.user_state)
    score_fraction = Float(default=None, scope=Scope.user_state)
    """The counted score as a fraction of the lab's maximum (0..1); None before the first check."""
    last_checked = String(default="", scope=Scope.user_state)
    checked_at = Float(default=None, scope=Scope.user_state)
    """When the latest check this unit kept ran (the service's time): a later one made on the lab page
    outside the unit is adopted when the unit opens (`_adopt_outside_check`)."""

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

    def _course_name(self) -> str:
        """The course's display name: the course block above the unit (the LMS's course tree), else the
        `course_name` setting (a runtime without courses, such as the workbench), else nothing."""
        block = self
        for _ in range(COURSE_DEPTH):
            try:
                block = block.get_parent()
            except Exception:  # a runtime that cannot load the parent
                log.warning("stacklab: the unit's parents could not be read", exc_info=True)
                break
            if block is None:
                break
            if block.scope_ids.block_type == "course":
                return str(getattr(block, "display_name", "") or "")
        return str(self._settings().get("course_name") or "")

    def _page(self, lab_url: str) -> dict:
        """The handlers' answer that opens the lab page in the unit's frame."""
        return {"lab_url": embedded(lab_url, self._course_name())}

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
        """The unit, rendered at once without asking the service (a hung service must not hold the page):
        the page's script then opens the lab through the `open` handler and shows progress meanwhile.
        Pre-resume: the service hears of the view at once, beside the render (`_pre_resume`).
        """
        self._pre_resume()
        frag = Fragment(loader.render_django_template("templates/student.html", self._view_context()))
        frag.add_css_url(self.runtime.local_resource_url(self, STYLE))
        frag.add_javascript_url(self.runtime.local_resource_url(self, SCRIPT))
        frag.initialize_js("StacklabXBlock")
        return frag

    def _pre_resume(self) -> None:
        """Tell the service the unit is being rendered for this learner, once per view, so that their paused
        lab starts waking up before the page's script (or the learner) asks for it: the render, the page's
        loading and the `open` handler's round trip are saved from the wait. Server side, from the render,
        because that is the earliest moment and the LMS's secret never leaves the server; in a thread of its
        own with the client's short timeout, so that the page never waits for it (a failure is only logged).
        Only for a learner who has opened the lab before (nothing to wake otherwise) and not for staff
        masquerading (their view is read-only and wakes the lab through `observe`). The service leaves a
        running lab alone and pauses a lab woken this way again after its `pre_resume_idle` unless the
        learner acts (docs/idle.md)."""
        if not self.environment or not self.lab or self._masquerading():
            return
        client = self._client()
        if client.config.problems():
            return
        course, lab, learner = self._course_id(), self.lab, self._learner()

        def send() -> None:
            try:
                client.prepare(course, lab, learner)
            except ServiceError as exc:
                log.info("stacklab pre-resume failed: %s (request id %s)", exc, exc.request_id or "-")

        threading.Thread(target=send, name="stacklab-pre-resume", daemon=True).start()

    def _read_only(self) -> bool:
        """Read-only units (the option, or staff masquerading as a learner) watch the lab and never grade."""
        return self.read_only or self._masquerading()

    def _view_context(self) -> dict:
        """What the template shows for this learner; nothing here calls the service."""
        page: dict = {"lab": self.lab, "title": self.display_name, "is_staff": self._is_staff()}
        problems = self._client().config.problems() + ([] if self.lab else ["no lab id set"])
        if problems:
            log.warning("stacklab XBlock not configured: %s", "; ".join(problems))
            return {**page, "not_configured": NOT_CONFIGURED}
        return {
            **page,
            "staff_view": STAFF_VIEW if self._masquerading() else "",
            "background": self.background,
            "can_check": not self._read_only(),
            "check_label": self.check_label,
            "score_text": self._score_text(),
        }

    def _words(self, exc: ServiceError, checking: bool = False) -> dict:
        log.warning("stacklab call failed: %s (request id %s)", exc, exc.request_id or "-")
        return messages.describe(exc, self._is_staff() or self._masquerading(), checking).as_json()

    @XBlock.json_handler
    def open(self, data, suffix=""):
        """Launch or resume this learner's lab (staff masquerading: watch it): the embedded page, or why not."""
        client = self._client()
        try:
            if self._masquerading():
                return self._observed(client)
            launched = client.launch(
                self._course_id(), self.lab, self._learner(), node=self.node, read_only=self.read_only
            )
        except ServiceError as exc:
            return self._words(exc)
        if self.environment != launched["environment"]["id"]:
            self.environment = launched["environment"]["id"]
        if not self._read_only():
            self._adopt_outside_check(client)
        status = launched["environment"]
        if self.background:
            return {
                "background": True,
                "progress": str(status.get("progress", "")),
                "ready": status.get("ready"),
                "score_text": self._score_text(),
            }
        return {**self._page(launched["lab_url"]), "score_text": self._score_text()}

    def _adopt_outside_check(self, client: StacklabClient) -> None:
        """A check run since the unit's last one (on the lab page opened on its own, or by the CLI) counts
        as if run here, so that the LMS's grade is the counted score shown anywhere. An instructor's
        override stands until the next check. A unit without `checked_at` that holds a score (kept before
        this was recorded) only learns the time."""
        try:
            latest = client.latest_checks(self.environment).get("latest")
        except ServiceError as exc:
            log.info("stacklab: the latest checks could not be read: %s", exc)
            return
        at = (latest or {}).get("checked_at")
        if at is None or (self.checked_at is not None and at <= self.checked_at):
            return
        if self.checked_at is None and self.score_fraction is not None:
            self.checked_at = at
            return
        self._keep(latest)

    @XBlock.json_handler
    def status(self, data, suffix=""):
        """The lab's progress, for a unit that shows no lab page (background units poll this)."""
        if not self.environment:
            return {"progress": "not launched"}
        try:
            status = self._client().status(self.environment)
        except ServiceError as exc:
            return self._words(exc, checking=True)
        return {"progress": str(status.get("progress", "")), "ready": bool(status.get("ready"))}

    def _observed(self, client: StacklabClient) -> dict:
        """Staff masquerading as a learner: that learner's lab, read-only; nothing is launched for them."""
        try:
            watched = client.observe(self._course_id(), self.lab, self._learner(), node=self.node)
        except ServiceError as exc:
            if exc.status == 404:
                return {"not_opened": NOT_OPENED}
            raise
        return self._page(watched["lab_url"])

    @XBlock.json_handler
    def check(self, data, suffix=""):
        """Run the lab's checks for this learner (as the LMS, with its signed JWT) and publish the grade.

        The unit is the only place that checks (the lab page is embedded without its own Check), so the
        grade published here is the counted score the unit shows.
        """
        if self._read_only():
            raise JsonHandlerError(403, "Read-only: this unit does not run checks or grade.")
        client = self._client()
        try:
            if not self.environment:  # the unit could not open the lab (yet): find or launch it now
                self.environment = client.launch(self._course_id(), self.lab, self._learner())["environment"][
                    "id"
                ]
        except ServiceError as exc:
            return self._words(exc)
        try:
            report = client.run_checks(self.environment)
        except ServiceError as exc:
            return self._words(exc, checking=True)
        return self._graded(report)

    def _keep(self, report: dict) -> None:
        """Keep and publish the report's counted score (best or latest, as the lab says)."""
        fraction = self._fraction(report.get("counted_score"), report.get("max_score"))
        new_value = olx.grade_to_publish(
            self.score_fraction, fraction, str(report.get("score_policy") or "best")
        )
        self.checked_at = report.get("checked_at", self.checked_at)
        if new_value is not None:
            self.score_fraction = new_value
            self.last_checked = str(report.get("score", ""))
            self.publish_grade()

    def _graded(self, report: dict) -> dict:
        """Keep and publish the counted score; what the unit shows."""
        self._keep(report)
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
        """This unit's labs in the course, by learner (LMS username where the runtime knows it), with state and
        counted score (course staff only)."""
        if not self._is_staff():
            raise JsonHandlerError(403, "Only course staff may list the course's labs.")
        client = self._client()
        try:
            envs = [e for e in client.course_environments(self._course_id()) if e.get("lab") == self.lab]
        except ServiceError as exc:
            return self._words(exc)
        return {"environments": [self._staff_row(client, e) for e in envs]}

    def _staff_row(self, client: StacklabClient, env: dict) -> dict:
        learner = str(env.get("learner", ""))
        row = {k: env.get(k) for k in ("id", "learner", "lab", "observed", "progress", "message")}
        row["username"] = self._username(learner)
        row["time_used"] = messages.time_used(env.get("running_s"))
        try:
            latest = client.latest_checks(str(env.get("id")))
        except ServiceError:
            latest = {}
        counted = latest.get("counted_score")
        earned = self._fraction(counted, latest.get("max_score")) * self.weight
        # In this unit's weight, as the unit and the LMS's grade show it (one score wherever it is read).
        row["score"] = "not checked" if counted is None else f"{_fmt(earned)} / {_fmt(self.weight)}"
        return row

    def _username(self, anonymous_id: str) -> str:
        """The LMS username for an anonymous id (edx-platform's user service), else the id itself."""
        service = self.runtime.service(self, "user")
        lookup = getattr(service, "get_user_by_anonymous_id", None)
        try:
            user = lookup(anonymous_id) if lookup else None
        except Exception:  # noqa: BLE001 - a runtime that cannot map ids
            user = None
        return str(getattr(user, "username", "") or anonymous_id)

    @XBlock.json_handler
    def staff_observe(self, data, suffix=""):
        """A learner's lab, read-only, for course staff (the service's observe: nothing is launched)."""
        if not self._is_staff():
            raise JsonHandlerError(403, "Only course staff may watch a learner's lab.")
        try:
            watched = self._client().observe(self._course_id(), self.lab, str(data.get("learner", "")))
        except ServiceError as exc:
            return {"not_opened": NOT_OPENED} if exc.status == 404 else self._words(exc)
        return self._page(watched["lab_url"])

    @XBlock.json_handler
    def staff_grant(self, data, suffix=""):
        """More running time for a learner under this lab's usage limit (course staff only); the service keeps
        the hours, the reason and who gave them, and puts the grant in its audit log."""
        if not self._is_staff():
            raise JsonHandlerError(403, "Only course staff may give learners more lab time.")
        try:
            hours = float(data.get("hours", 0))
        except (TypeError, ValueError):
            hours = 0.0
        reason = str(data.get("reason", "")).strip()
        if not 0 < hours <= MAX_GRANT_HOURS or not reason:  # NaN fails the comparison too
            return {"error": f"Give a number of hours (more than 0, at most {MAX_GRANT_HOURS}) and a reason."}
        user = self._user()
        staff = str(getattr(user, "opt_attrs", {}).get("edx-platform.username", "") or "") if user else ""
        learner = str(data.get("learner", ""))
        try:
            granted = self._client().grant_time(self._course_id(), self.lab, learner, hours, reason, staff)
        except ServiceError as exc:
            return {"not_opened": NOT_OPENED} if exc.status == 404 else self._words(exc)
        usage = granted.get("usage") or {}
        left = messages.time_used(usage.get("remaining_s")) if usage else "no limit"
        return {
            "granted": f"{hours:g} h more lab time given ({self._username(learner)} now has {left} left)."
        }

    @XBlock.json_handler
    def staff_course_view(self, data, suffix=""):
        """The service's course view of this unit's lab for course staff (every learner: state, score history,
        time used, last activity, queue), opened with the LMS's authority: the service gives a staff token for
        this course only.

        The service knows learners by the LMS's anonymous ids; `names` maps them to LMS usernames for the page
        (it travels in the URL's fragment to the staff member's browser only, never to the service)."""
        if not self._is_staff():
            raise JsonHandlerError(403, "Only course staff may open the course view.")
        user = self._user()
        staff = str(getattr(user, "opt_attrs", {}).get("edx-platform.username", "") or "") if user else ""
        client = self._client()
        try:
            view = client.staff_view(self._course_id(), self.lab, staff)
            learners = {str(e.get("learner", "")) for e in client.course_environments(self._course_id())}
        except ServiceError as exc:
            return self._words(exc)
        names = {anonymous: self._username(anonymous) for anonymous in sorted(learners)[:MAX_NAMES]}
        return {"url": view["url"], "names": {k: v for k, v in names.items() if v != k}}

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

    def _service_labs(self) -> list[dict] | None:
        """The service's labs (GET /api/v1/labs), once per block instance; None when it cannot be asked."""
        if not hasattr(self, "_labs_cache"):
            client = self._client()
            labs = None
            if not client.config.problems():
                try:
                    labs = client.labs()
                except ServiceError as exc:
                    log.warning("stacklab: the lab list could not be read: %s", exc)
            self._labs_cache = labs
        return self._labs_cache

    def _lab_choices(self) -> list[dict] | None:
        labs = self._service_labs()
        if labs is None:
            return None  # a free text field: the service cannot say what exists
        choices = [{"display_name": f"{lab['title']} ({lab['id']})", "value": lab["id"]} for lab in labs]
        if self.lab not in {lab["id"] for lab in labs}:  # keep the saved value visible, marked
            choices.insert(0, {"display_name": f"{self.lab or '(none)'} — not offered", "value": self.lab})
        return choices

    def _node_choices(self) -> list[dict] | None:
        labs = self._service_labs()
        if labs is None:
            return None
        nodes: dict[str, list[str]] = {}
        for lab in labs:
            for node in olx.learner_nodes(lab):
                nodes.setdefault(node, []).append(lab["id"])
        choices = [{"display_name": "(the lab's first node)", "value": ""}]
        choices += [{"display_name": f"{n} (in {', '.join(ids)})", "value": n} for n, ids in nodes.items()]
        if self.node and self.node not in nodes:
            choices.append({"display_name": f"{self.node} — not in any lab", "value": self.node})
        return choices

    def _problems(self, data: object) -> list[olx.Problem]:
        labs = self._service_labs()
        known = None if labs is None else [lab["id"] for lab in labs]
        nodes = None if labs is None else {lab["id"]: olx.learner_nodes(lab) for lab in labs}
        return olx.validate(self._values(data), known, nodes)

    def validate_field_data(self, validation: Validation, data: object) -> None:
        """Our rules (olx.validate, with the service's labs and nodes when it answers) for Studio's validation
        panel and for the form's Save.

        The mixin refuses a save on any message, while a warning (weight 0, an empty label) must not stop an
        author: on save (`data` is the mixin's preview, not this block) only the errors are added.
        """
        saving = data is not self
        for problem in self._problems(data):
            if problem.level == "error":
                validation.add(
                    ValidationMessage(ValidationMessage.ERROR, f"{problem.field}: {problem.message}")
                )
            elif not saving:
                validation.add(
                    ValidationMessage(ValidationMessage.WARNING, f"{problem.field}: {problem.message}")
                )

    def studio_view(self, context=None) -> Fragment:
        """The mixin's form, then the warnings and a read-only preview of the chosen lab (from the service's
        lab list: nothing is launched)."""
        frag = super().studio_view(context)
        labs = self._service_labs()
        preview = {
            "labs": None if labs is None else [{**lab, "preview": _lab_preview(lab)} for lab in labs],
            "chosen": self.lab,
            "warnings": [f"{p.field}: {p.message}" for p in self._problems(self) if p.level == "warning"],
        }
        frag.add_content(loader.render_django_template("templates/studio_preview.html", preview))
        return frag

    def author_view(self, context=None) -> Fragment:
        """The unit in Studio: the lab as learners will meet it (description, nodes, checks, hints), the
        unit's settings and every problem found (the unit's own, the lab's Heat template, lab files the
        service could not read), without launching anything; Studio would otherwise show the student view,
        which starts a lab."""
        labs = self._service_labs()
        lab = next((lab for lab in labs or [] if lab["id"] == self.lab), None)
        problems = self._problems(self)
        view = {
            "title": self.display_name,
            "lab_id": self.lab,
            "node": self.node,
            "read_only": self.read_only,
            "weight": _fmt(self.weight),
            "check_label": self.check_label,
            "lab": lab,
            "preview": _lab_preview(lab) if lab else "",
            "unreachable": labs is None,
            "errors": [f"{p.field}: {p.message}" for p in problems if p.level == "error"]
            + [f"the lab's template: {p}" for p in (lab or {}).get("problems") or []],
            "warnings": [f"{p.field}: {p.message}" for p in problems if p.level == "warning"],
            "skipped": self._skipped_labs() if labs is not None and lab is None else [],
        }
        frag = Fragment(loader.render_django_template("templates/author_view.html", view))
        frag.add_css_url(self.runtime.local_resource_url(self, STYLE))
        return frag

    def _skipped_labs(self) -> list[dict]:
        """The service's unreadable lab files (the chosen lab may be one of them); [] when it cannot say."""
        try:
            return self._client().skipped_labs()
        except ServiceError as exc:
            log.warning("stacklab: the skipped labs could not be read: %s", exc)
            return []

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
            (
                "stacklab: a lab the service does not offer",
                '<vertical_demo><stacklab lab="no-such-lab" display_name="Missing lab"/></vertical_demo>',
            ),
            (
                "stacklab: a node learners may not open",
                '<vertical_demo><stacklab lab="pair-lab" node="db" display_name="Bad node"/></vertical_demo>',
            ),
            (
                "stacklab: a unit that does not count (weight 0)",
                '<vertical_demo><stacklab lab="pair-lab" weight="0" display_name="Practice"/></vertical_demo>',
            ),
        ]
