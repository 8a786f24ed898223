"""The stacklab XBlock: a lab in a course unit, graded through the runtime."""

from __future__ import annotations

import html
import logging
import os

from web_fragments.fragment import Fragment
from xblock.core import XBlock
from xblock.exceptions import JsonHandlerError
from xblock.fields import Boolean, Float, Scope, String
from xblock.scorable import ScorableXBlockMixin, Score
from xblock.validation import ValidationMessage

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

CSS = """
.stacklab-block { font-family: inherit; }
.stacklab-block iframe { width: 100%; height: 640px; border: 1px solid #ccc; border-radius: 4px; }
.stacklab-block .stacklab-bar { display: flex; gap: 1em; align-items: center; margin-top: .5em; }
.stacklab-block .stacklab-error { padding: 1em; background: #fdecea; color: #611a15; border-radius: 4px; }
.stacklab-block .stacklab-pass { color: #1b5e20; } .stacklab-block .stacklab-fail { color: #b71c1c; }
.stacklab-block .stacklab-staff-view { padding: .5em 1em; background: #fff4d6; color: #5c4400; border-radius: 4px; }
"""

JS = """
function StacklabXBlock(runtime, element) {
  var root = element.jquery ? element[0] : element;
  function csrf() {
    var m = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function call(handler, body) {
    return fetch(runtime.handlerUrl(element, handler), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
      body: JSON.stringify(body || {})
    }).then(function (r) { return r.json(); });
  }
  function text(el, value) { if (el) el.textContent = value; }
  var button = root.querySelector(".stacklab-check");
  if (button) button.addEventListener("click", function () {
    button.disabled = true;
    text(root.querySelector(".stacklab-status"), "Checking your work...");
    call("check").then(function (res) {
      button.disabled = false;
      if (res.error) { text(root.querySelector(".stacklab-status"), res.error); return; }
      text(root.querySelector(".stacklab-score"), res.score_text);
      text(root.querySelector(".stacklab-status"), "Checked: " + res.passed + " of " + res.total + " passed.");
      var list = root.querySelector(".stacklab-results");
      list.innerHTML = "";
      res.results.forEach(function (r) {
        var li = document.createElement("li");
        li.className = r.passed ? "stacklab-pass" : "stacklab-fail";
        li.textContent = (r.passed ? "\\u2713 " : "\\u2717 ") + r.name + (r.passed || !r.hint ? "" : " \\u2014 " + r.hint);
        list.appendChild(li);
      });
    }).catch(function (e) {
      button.disabled = false;
      text(root.querySelector(".stacklab-status"), "The check could not run: " + e);
    });
  });
  var staff = root.querySelector(".stacklab-staff-load");
  if (staff) staff.addEventListener("click", function () {
    call("staff_environments").then(function (res) {
      var out = root.querySelector(".stacklab-staff-list");
      out.innerHTML = "";
      if (res.error) { out.textContent = res.error; return; }
      res.environments.forEach(function (e) {
        var li = document.createElement("li");
        li.dataset.environment = e.id;
        li.textContent = e.learner + " \\u2014 " + e.lab + ": " + e.observed + " (" + e.progress + ")" +
          (e.message ? " \\u2014 " + e.message : "");
        out.appendChild(li);
      });
      if (!res.environments.length) out.textContent = "No environments in this course yet.";
    });
  });
}
"""

STUDIO_JS = """
function StacklabStudio(runtime, element) {
  var root = element.jquery ? element[0] : element;
  function csrf() {
    var m = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  root.querySelector(".stacklab-save").addEventListener("click", function (ev) {
    ev.preventDefault();
    var data = {};
    root.querySelectorAll("[data-field]").forEach(function (input) {
      data[input.dataset.field] = input.type === "checkbox" ? input.checked : input.value;
    });
    fetch(runtime.handlerUrl(element, "studio_submit"), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()}, body: JSON.stringify(data)
    }).then(function (r) { return r.json(); }).then(function (res) {
      var out = root.querySelector(".stacklab-studio-messages");
      out.textContent = res.errors && res.errors.length ? res.errors.join(" ") : "Saved.";
      if (!(res.errors && res.errors.length) && runtime.notify) runtime.notify("save", {state: "end"});
    });
  });
  var cancel = root.querySelector(".stacklab-cancel");
  if (cancel) cancel.addEventListener("click", function (ev) {
    ev.preventDefault(); if (runtime.notify) runtime.notify("cancel", {});
  });
}
"""


def _fmt(number: float) -> str:
    return f"{number:g}"


@XBlock.needs("user")
@XBlock.wants("settings")
class StacklabXBlock(ScorableXBlockMixin, XBlock):
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
        name = html.escape(self.display_name)
        parts = [f'<div class="stacklab-block" data-lab="{html.escape(self.lab)}"><h3>{name}</h3>']
        client = self._client()
        problems = client.config.problems() + ([] if self.lab else ["no lab id set"])
        masquerading = not problems and self._masquerading()
        if problems:
            log.warning("stacklab XBlock not configured: %s", "; ".join(problems))
            parts.append(f'<p class="stacklab-error" role="alert">{html.escape(NOT_CONFIGURED)}</p>')
        elif masquerading:
            parts.append(self._staff_view_html(client, name))
        else:
            parts.append(self._lab_html(client, name))
        if not problems and not masquerading:
            parts.append(
                '<div class="stacklab-bar">'
                f'<button type="button" class="stacklab-check">{html.escape(self.check_label)}</button>'
                f'<span>Score: <span class="stacklab-score">{html.escape(self._score_text())}</span></span>'
                '<span class="stacklab-status" role="status"></span></div><ul class="stacklab-results"></ul>'
            )
        if self._is_staff():
            parts.append(
                '<details class="stacklab-staff"><summary>Staff: environments of this course</summary>'
                '<button type="button" class="stacklab-staff-load">Load</button>'
                '<ul class="stacklab-staff-list"></ul></details>'
            )
        parts.append("</div>")
        frag = Fragment("".join(parts))
        frag.add_css(CSS)
        frag.add_javascript(JS)
        frag.initialize_js("StacklabXBlock")
        return frag

    @staticmethod
    def _frame(title: str, url: str) -> str:
        return (
            f'<iframe class="stacklab-frame" title="{title}" src="{html.escape(url)}" '
            'allow="clipboard-read; clipboard-write" referrerpolicy="no-referrer"></iframe>'
        )

    @staticmethod
    def _error(message: str) -> str:
        return f'<p class="stacklab-error" role="alert">{html.escape(message)}</p>'

    def _lab_html(self, client: StacklabClient, title: str) -> str:
        """Launch or resume this learner's lab (ahead of the first keystroke) and embed its page."""
        try:
            launched = client.launch(
                self._course_id(), self.lab, self._learner(), node=self.node, read_only=self.read_only
            )
        except ServiceError as exc:
            log.warning("stacklab launch failed: %s", exc)
            return self._error(UNREACHABLE if exc.unreachable else f"The lab could not open: {exc}")
        if self.environment != launched["environment"]["id"]:
            self.environment = launched["environment"]["id"]
            self.save()  # views do not save fields by themselves
        if self.background:
            progress = html.escape(str(launched["environment"].get("progress", "")))
            return (
                '<p class="stacklab-background" role="status">Your lab is being prepared in the background '
                f'(<span class="stacklab-progress">{progress}</span>); use the check button when you are '
                "done.</p>"
            )
        return self._frame(title, launched["lab_url"])

    def _staff_view_html(self, client: StacklabClient, title: str) -> str:
        """Staff masquerading as a learner: that learner's lab, read-only; nothing is launched for them."""
        notice = f'<p class="stacklab-staff-view" role="note">{html.escape(STAFF_VIEW)}</p>'
        try:
            watched = client.observe(self._course_id(), self.lab, self._learner(), node=self.node)
        except ServiceError as exc:
            if exc.status == 404:
                return notice + f'<p class="stacklab-not-opened" role="status">{html.escape(NOT_OPENED)}</p>'
            log.warning("stacklab observe failed: %s", exc)
            return notice + self._error(UNREACHABLE if exc.unreachable else f"The lab cannot be shown: {exc}")
        return notice + self._frame(title, watched["lab_url"])

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

    # ---- Studio ----------------------------------------------------------------------------------------
    def _values(self) -> dict:
        return {name: getattr(self, name) for name in olx.DEFAULTS}

    def validate(self):
        validation = super().validate()
        for problem in olx.validate(self._values()):
            kind = ValidationMessage.ERROR if problem.level == "error" else ValidationMessage.WARNING
            validation.add(ValidationMessage(kind, f"{problem.field}: {problem.message}"))
        return validation

    def studio_view(self, context=None) -> Fragment:
        rows = []
        for name in self.editable_fields:
            field = self.fields[name]
            value = getattr(self, name)
            label = html.escape(field.display_name or name)
            if isinstance(field, Boolean):
                control = f'<input type="checkbox" data-field="{name}"{" checked" if value else ""}>'
            else:
                control = f'<input type="text" data-field="{name}" value="{html.escape(str(value))}">'
            rows.append(f"<li><label>{label} {control}</label></li>")
        body = (
            '<div class="stacklab-studio"><ul>' + "".join(rows) + "</ul>"
            '<p class="stacklab-studio-messages" role="status"></p>'
            '<button class="stacklab-save">Save</button> <button class="stacklab-cancel">Cancel</button></div>'
        )
        frag = Fragment(body)
        frag.add_javascript(STUDIO_JS)
        frag.initialize_js("StacklabStudio")
        return frag

    @XBlock.json_handler
    def studio_submit(self, data, suffix=""):
        attrs = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in data.items()}
        values, problems = olx.parse_attributes(attrs)
        merged = {**self._values(), **values}
        problems += olx.validate(merged)
        errors = [f"{p.field}: {p.message}" for p in problems if p.level == "error"]
        if errors:
            return {"errors": errors}
        for name, value in values.items():
            setattr(self, name, value)
        return {"errors": [], "warnings": [f"{p.field}: {p.message}" for p in problems]}

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
