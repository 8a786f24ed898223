"""The stacklab XBlock: a lab in a course unit, graded through the runtime."""

from __future__ import annotations

import html
import logging
import os

from web_fragments.fragment import Fragment
from xblock.core import XBlock
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

CSS = """
.stacklab-block { font-family: inherit; }
.stacklab-block iframe { width: 100%; height: 640px; border: 1px solid #ccc; border-radius: 4px; }
.stacklab-block .stacklab-bar { display: flex; gap: 1em; align-items: center; margin-top: .5em; }
.stacklab-block .stacklab-error { padding: 1em; background: #fdecea; color: #611a15; border-radius: 4px; }
.stacklab-block .stacklab-pass { color: #1b5e20; } .stacklab-block .stacklab-fail { color: #b71c1c; }
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
        li.textContent = e.learner + " \\u2014 " + e.lab + ": " + e.progress + (e.message ? " (" + e.message + ")" : "");
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
    score_policy = String(
        display_name="Score policy",
        help="best or latest (mirror the lab's `score`)",
        default="best",
        scope=Scope.settings,
        values=["best", "latest"],
    )

    environment = String(default="", scope=Scope.user_state)
    score_fraction = Float(default=None, scope=Scope.user_state)
    """The counted score as a fraction of the lab's maximum (0..1); None before the first check."""
    last_checked = String(default="", scope=Scope.user_state)

    has_score = True
    icon_class = "problem"
    editable_fields = (
        "display_name",
        "lab",
        "weight",
        "node",
        "read_only",
        "background",
        "check_label",
        "score_policy",
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

    def _learner(self) -> str:
        anonymous = getattr(self.runtime, "anonymous_student_id", None)
        if anonymous:
            return str(anonymous)
        user = self.runtime.service(self, "user").get_current_user()
        return str(user.opt_attrs.get("edx-platform.anonymous_user_id") or self.scope_ids.user_id)

    def _is_staff(self) -> bool:
        try:
            user = self.runtime.service(self, "user").get_current_user()
            return bool(user.opt_attrs.get("edx-platform.user_is_staff"))
        except Exception:  # noqa: BLE001 - a runtime without the user service
            return bool(getattr(self.runtime, "user_is_staff", False))

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
        if problems:
            log.warning("stacklab XBlock not configured: %s", "; ".join(problems))
            parts.append(f'<p class="stacklab-error" role="alert">{html.escape(NOT_CONFIGURED)}</p>')
        else:
            try:
                launched = client.launch(self._course_id(), self.lab, self._learner())
            except ServiceError as exc:
                log.warning("stacklab launch failed: %s", exc)
                message = UNREACHABLE if exc.unreachable else f"The lab could not open: {exc}"
                parts.append(f'<p class="stacklab-error" role="alert">{html.escape(message)}</p>')
            else:
                if self.environment != launched["environment"]["id"]:
                    self.environment = launched["environment"]["id"]
                    self.save()  # views do not save fields by themselves
                url = launched["lab_url"]
                if self.node:
                    url += "&node=" + self.node
                if self.read_only:
                    url += "&read_only=1"
                if self.background:
                    parts.append(
                        '<p class="stacklab-background">Your lab is being prepared in the background.</p>'
                    )
                else:
                    parts.append(
                        f'<iframe class="stacklab-frame" title="{name}" src="{html.escape(url)}" '
                        'allow="clipboard-read; clipboard-write" referrerpolicy="no-referrer"></iframe>'
                    )
        if not problems:
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

    @XBlock.json_handler
    def check(self, data, suffix=""):
        """Run the lab's checks for this learner and publish the grade."""
        if not self.environment:
            return {"error": "Open the lab first (reload the page)."}
        client = self._client()
        try:
            # A fresh learner token for this learner's environment: the service's checks endpoint takes
            # learner tokens (launch is idempotent: it returns the running environment).
            launched = client.launch(self._course_id(), self.lab, self._learner())
            self.environment = launched["environment"]["id"]
            report = client.run_checks(self.environment, learner_token=launched["token"])
        except ServiceError as exc:
            return {"error": UNREACHABLE if exc.unreachable else f"The check could not run: {exc}"}
        max_score = float(report.get("max_score") or 0.0)
        counted = float(report.get("counted_score") or 0.0)
        fraction = counted / max_score if max_score > 0 else 0.0
        new_value = olx.grade_to_publish(self.score_fraction, fraction, self.score_policy)
        if new_value is not None:
            self.score_fraction = new_value
            self._publish_grade(Score(new_value * self.weight, self.weight))
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

    @XBlock.json_handler
    def staff_environments(self, data, suffix=""):
        if not self._is_staff():
            return {"error": "staff only"}
        try:
            envs = self._client().course_environments(self._course_id())
        except ServiceError as exc:
            return {"error": UNREACHABLE if exc.unreachable else str(exc)}
        return {
            "environments": [
                {k: e.get(k) for k in ("id", "learner", "lab", "progress", "message")} for e in envs
            ]
        }

    # ---- grading (ScorableXBlockMixin: rescore and override) -------------------------------------------
    def _publish_grade(self, score, only_if_higher=None):
        self.runtime.publish(
            self,
            "grade",
            {"value": score.raw_earned, "max_value": score.raw_possible, "only_if_higher": only_if_higher},
        )

    def has_submitted_answer(self):
        return self.score_fraction is not None

    def get_score(self):
        return Score((self.score_fraction or 0.0) * self.weight, self.weight)

    def set_score(self, score):
        self.score_fraction = score.raw_earned / score.raw_possible if score.raw_possible else 0.0

    def calculate_score(self):
        return self.get_score()

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
        ]
