/* The stacklab unit in the LMS: opens the lab after the page rendered (the `open` handler), "Check my work"
   and the staff panel, all through the block's JSON handlers. Loaded by URL from the XBlock's package
   (block.py); the runtime calls StacklabXBlock(runtime, element). */
function StacklabXBlock(runtime, element) {
  "use strict";
  var root = element.jquery ? element[0] : element;
  var HANDLER_TIMEOUT_MS = 15000; /* the handlers' own service calls time out sooner (client.py) */
  var POLL_MS = 3000;
  var NO_ANSWER = "The lab service is not answering right now. Try again in a minute; " +
    "if this persists, tell your course staff.";

  /* Django's CSRF token (the LMS and the workbench both set the csrftoken cookie). */
  function csrf() {
    var m = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  /* A handler's JSON answer; a failed or hung call answers {error} in words, never a status. */
  function call(handler, body) {
    var abort = new AbortController();
    var timer = setTimeout(function () { abort.abort(); }, HANDLER_TIMEOUT_MS);
    return fetch(runtime.handlerUrl(element, handler), {
      method: "POST", credentials: "same-origin", signal: abort.signal,
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
      body: JSON.stringify(body || {})
    }).then(function (r) { return r.json(); })
      .catch(function () { return {error: NO_ANSWER}; })
      .finally(function () { clearTimeout(timer); });
  }

  function text(el, value) { if (el) el.textContent = value; }
  function make(tag, cls, value) {
    var el = document.createElement(tag);
    if (cls) el.className = cls;
    if (value !== undefined) el.textContent = value;
    return el;
  }

  /* An error in words, staff's detail under it, and a way to try again. */
  function showError(box, res, retry) {
    box.innerHTML = "";
    box.appendChild(make("p", "stacklab-error", res.error || res.starting)).setAttribute("role", "alert");
    if (res.staff_detail) box.appendChild(make("p", "stacklab-staff-detail", res.staff_detail));
    if (retry) {
      var again = box.appendChild(make("button", "stacklab-retry", "Try again"));
      again.type = "button";
      again.addEventListener("click", retry);
    }
  }

  /* The lab page in a frame whose height the learner can drag (the box's corner); Full screen is the
     keyboard's way to more room. */
  function frame(box, url, title) {
    box.innerHTML = "";
    var f = make("iframe", "stacklab-frame");
    f.title = title; f.src = url; f.referrerPolicy = "no-referrer";
    f.setAttribute("allow", "clipboard-read; clipboard-write; fullscreen");  // the page has a Full screen button
    box.appendChild(make("div", "stacklab-frame-box")).appendChild(f);
  }

  var lab = root.querySelector(".stacklab-lab");
  var polling = null;

  /* Background units: follow the lab's progress while the unit is visible, and at once when shown again. */
  function pollStatus() {
    if (document.hidden) return;
    call("status").then(function (res) {
      if (res.error) { showError(lab, res, openLab); stopPolling(); return; }
      text(lab.querySelector(".stacklab-progress"), res.progress);
      if (res.ready || res.progress === "failed") stopPolling();
    });
  }
  function stopPolling() { if (polling) clearInterval(polling); polling = null; }

  function showBackground(res) {
    lab.innerHTML = "";
    var p = lab.appendChild(make("p", "stacklab-background"));
    p.setAttribute("role", "status");
    p.append("Your lab is being prepared in the background (", make("span", "stacklab-progress", res.progress),
      "); use the check button when you are done.");
    if (!res.ready) { stopPolling(); polling = setInterval(pollStatus, POLL_MS); }
  }

  function openLab() {
    if (!lab) return;
    lab.innerHTML = "";
    lab.appendChild(make("p", "stacklab-progress-line", "Opening your lab…")).setAttribute("role", "status");
    call("open").then(function (res) {
      if (res.score_text) text(root.querySelector(".stacklab-score"), res.score_text);  /* a check made elsewhere */
      if (res.lab_url) frame(lab, res.lab_url, lab.dataset.title || "Lab");
      else if (res.background) showBackground(res);
      else if (res.not_opened) { lab.innerHTML = ""; lab.appendChild(make("p", "stacklab-not-opened", res.not_opened)); }
      else showError(lab, res, openLab);
    });
  }
  document.addEventListener("visibilitychange", function () { if (polling && !document.hidden) pollStatus(); });
  openLab();

  function showResults(res) {
    text(root.querySelector(".stacklab-score"), res.score_text);
    text(root.querySelector(".stacklab-status"), "Checked: " + res.passed + " of " + res.total + " passed.");
    var list = root.querySelector(".stacklab-results");
    list.innerHTML = "";
    res.results.forEach(function (r) {
      list.appendChild(make("li", r.passed ? "stacklab-pass" : "stacklab-fail",
        (r.passed ? "\u2713 " : "\u2717 ") + r.name + (r.passed || !r.hint ? "" : " \u2014 " + r.hint)));
    });
  }

  var button = root.querySelector(".stacklab-check");
  if (button) button.addEventListener("click", function () {
    var status = root.querySelector(".stacklab-status");
    button.disabled = true;
    text(status, "Checking your work…");
    call("check").then(function (res) {
      button.disabled = false;
      if (res.error || res.starting) {
        text(status, (res.error || res.starting) + (res.staff_detail ? " " + res.staff_detail : ""));
        return;
      }
      showResults(res);
    });
  });

  function watch(learner) {
    var out = root.querySelector(".stacklab-staff-watch");
    text(out, "Opening " + learner.username + "'s lab (read-only)…");
    call("staff_observe", {learner: learner.learner}).then(function (res) {
      if (res.lab_url) frame(out, res.lab_url, learner.username + "'s lab (read-only)");
      else if (res.not_opened) text(out, res.not_opened);
      else showError(out, res, null);
    });
  }

  function staffRow(e) {
    var tr = make("tr");
    tr.dataset.environment = e.id;
    [e.username, e.progress + (e.message ? " \u2014 " + e.message : ""), e.score, e.time_used].forEach(function (v) {
      tr.appendChild(make("td", "", v));
    });
    var b = make("button", "stacklab-watch", "Watch " + e.username + "'s lab");
    b.type = "button";
    b.addEventListener("click", function () { watch(e); });
    var cell = tr.appendChild(make("td"));
    cell.appendChild(b);
    var more = make("button", "stacklab-grant", "More time for " + e.username);
    more.type = "button";
    more.addEventListener("click", function () { grant(e); });
    cell.appendChild(more);
    return tr;
  }

  /* Usage limits: more running time for a learner, with the reason the service keeps (course staff). */
  function grant(learner) {
    var status = root.querySelector(".stacklab-staff-status");
    var hours = window.prompt("Hours of lab time to give " + learner.username + ":", "1");
    if (hours === null) return;
    var reason = window.prompt("Why? (kept with the grant, seen by other staff)", "");
    if (reason === null) return;
    call("staff_grant", {learner: learner.learner, hours: Number(hours), reason: reason}).then(function (res) {
      text(status, res.granted || res.not_opened || ((res.error || "") + (res.staff_detail ? " " + res.staff_detail : "")));
    });
  }

  function showEnvironments(res) {
    var out = root.querySelector(".stacklab-staff-list");
    var status = root.querySelector(".stacklab-staff-status");
    out.innerHTML = "";
    text(status, "");
    if (res.error) { text(status, res.error + (res.staff_detail ? " " + res.staff_detail : "")); return; }
    res.environments.forEach(function (e) { out.appendChild(staffRow(e)); });
    if (!res.environments.length) text(status, "No learner has opened this lab yet.");
  }

  /* The service's course view in a new tab (opened at the click, so no popup blocker stops it). */
  var courseView = root.querySelector(".stacklab-course-view");
  if (courseView) courseView.addEventListener("click", function () {
    var tab = window.open("about:blank", "_blank");
    var status = root.querySelector(".stacklab-staff-status");
    call("staff_course_view").then(function (res) {
      /* Learners' LMS usernames go to the page in the fragment (read by the browser, never sent anywhere). */
      var url = res.url && res.names && Object.keys(res.names).length ?
        res.url + "&names=" + encodeURIComponent(JSON.stringify(res.names)) : res.url;
      if (url && tab) { tab.opener = null; tab.location.replace(url); return; }
      if (url) { window.location.assign(url); return; }
      if (tab) tab.close();
      text(status, (res.error || "") + (res.staff_detail ? " " + res.staff_detail : ""));
    });
  });

  var staff = root.querySelector(".stacklab-staff-load");
  if (staff) staff.addEventListener("click", function () {
    call("staff_environments").then(showEnvironments);
  });
}
