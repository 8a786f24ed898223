/* The stacklab unit in the LMS: "Check my work" and the staff panel, both through the block's JSON handlers.
   Loaded by URL from the XBlock's package (block.py); the runtime calls StacklabXBlock(runtime, element). */
function StacklabXBlock(runtime, element) {
  "use strict";
  var root = element.jquery ? element[0] : element;

  /* Django's CSRF token (the LMS and the workbench both set the csrftoken cookie). */
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

  function showResults(res) {
    text(root.querySelector(".stacklab-score"), res.score_text);
    text(root.querySelector(".stacklab-status"), "Checked: " + res.passed + " of " + res.total + " passed.");
    var list = root.querySelector(".stacklab-results");
    list.innerHTML = "";
    res.results.forEach(function (r) {
      var li = document.createElement("li");
      li.className = r.passed ? "stacklab-pass" : "stacklab-fail";
      li.textContent = (r.passed ? "\u2713 " : "\u2717 ") + r.name + (r.passed || !r.hint ? "" : " \u2014 " + r.hint);
      list.appendChild(li);
    });
  }

  var button = root.querySelector(".stacklab-check");
  if (button) button.addEventListener("click", function () {
    button.disabled = true;
    text(root.querySelector(".stacklab-status"), "Checking your work...");
    call("check").then(function (res) {
      button.disabled = false;
      if (res.error) { text(root.querySelector(".stacklab-status"), res.error); return; }
      showResults(res);
    }).catch(function (e) {
      button.disabled = false;
      text(root.querySelector(".stacklab-status"), "The check could not run: " + e);
    });
  });

  function showEnvironments(res) {
    var out = root.querySelector(".stacklab-staff-list");
    out.innerHTML = "";
    if (res.error) { out.textContent = res.error; return; }
    res.environments.forEach(function (e) {
      var li = document.createElement("li");
      li.dataset.environment = e.id;
      li.textContent = e.learner + " \u2014 " + e.lab + ": " + e.observed + " (" + e.progress + ")" +
        (e.message ? " \u2014 " + e.message : "");
      out.appendChild(li);
    });
    if (!res.environments.length) out.textContent = "No environments in this course yet.";
  }

  var staff = root.querySelector(".stacklab-staff-load");
  if (staff) staff.addEventListener("click", function () {
    call("staff_environments").then(showEnvironments);
  });
}
