"""Lab page open until the prompt is usable, for a suspended lab (target 1.5 s) and a running one (floor).

A real `stacklab serve` (its own data dir, SQLite, LXC) and Debian's chromium driven by Playwright. `/demo`
(no redirect followed) gives the demo learner's `/lab/ENV#token=T`; the page is opened once and the first
launch waited for. Then, `--rounds` times: open the URL in a new page while the lab runs (floor), close it;
suspend the lab (`stacklab env suspend ENV --wait`, same data dir); time the raw provider resume (the node's
cgroup freezer set to THAWED until its sshd sends a banner; then FROZEN again, so the service still finds it
suspended); open the same URL (same token, in the fragment) in a new page and time it. "Usable" means: the
terminal shows a prompt, `echo ok-$RANDOM` is typed and its output line appears. Times are the page's own
`performance.now()` (0 = navigation start); an init script records the API calls (fetch), the websocket's
open / ready / first output and when the prompt and the output appeared. Prints figures; never asserts.
See bench/README.md, "page_open.py".

    .venv/bin/python bench/page_open.py     # as root, ~2 min; --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_load import Service
from bench.common import ROOT, lxc_version, median, print_machine, print_table, verdict

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FREEZER = Path("/sys/fs/cgroup/freezer")
TARGET_MS = 1500

# Records, in page time (performance.now(), 0 = navigation start), what the lab page does on the wire.
INIT_SCRIPT = """
(() => {
  const bench = { fetches: [], sockets: [] };
  window.__bench = bench;
  const realFetch = window.fetch;
  window.fetch = async function (input, init) {
    const entry = {
      url: typeof input === "string" ? input : input.url,
      method: (init && init.method) || "GET",
      start: performance.now(),
    };
    bench.fetches.push(entry);
    const response = await realFetch.apply(this, arguments);
    entry.end = performance.now();
    entry.status = response.status;
    try {
      const body = await response.clone().json();
      if (body && typeof body === "object") {
        entry.progress = body.progress;
        entry.ready = body.ready;
      }
    } catch (e) {}
    return response;
  };
  const RealWebSocket = window.WebSocket;
  function BenchWebSocket(url, protocols) {
    const ws = protocols === undefined ? new RealWebSocket(url) : new RealWebSocket(url, protocols);
    const entry = { start: performance.now() };
    bench.sockets.push(entry);
    ws.addEventListener("open", () => { entry.open = performance.now(); });
    ws.addEventListener("message", (ev) => {
      if (typeof ev.data === "string") {
        if (entry.ready === undefined && ev.data.includes('"ready"')) entry.ready = performance.now();
      } else if (entry.output === undefined) {
        entry.output = performance.now();
      }
    });
    ws.addEventListener("close", (ev) => { entry.close = performance.now(); entry.code = ev.code; });
    return ws;
  }
  BenchWebSocket.prototype = RealWebSocket.prototype;
  for (const k of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) BenchWebSocket[k] = RealWebSocket[k];
  window.WebSocket = BenchWebSocket;
})();
"""

PROMPT_JS = """() => {
  const t = window.stacklabTerm;
  if (!t || t.state !== "connected" || !/\\$\\s*$/.test(t.text())) return false;
  window.__bench.prompt = performance.now();
  return true;
}"""

OUTPUT_JS = """(needle) => {
  const t = window.stacklabTerm;
  if (!t || !new RegExp("^" + needle + "\\\\d+\\\\s*$", "m").test(t.text())) return false;
  window.__bench.output = performance.now();
  return true;
}"""


@dataclass
class Sample:
    kind: str
    total_ms: float
    wall_ms: float
    marks: dict[str, float] = field(default_factory=dict)
    polls: int = 0
    ready_via: str = ""

    def line(self) -> str:
        m = self.marks
        parts = [f"{self.kind:<9} usable {self.total_ms:6.0f} ms (python wall {self.wall_ms:5.0f})"]
        parts.append(f"DOMContentLoaded {m.get('dom', -1):4.0f}")
        parts.append(f"POST /resume {m.get('resume_start', -1):4.0f}->{m.get('resume_end', -1):4.0f}")
        parts.append(f"polls {self.polls}, ready seen {m.get('ready_seen', -1):4.0f} ({self.ready_via})")
        if "server_ready" in m:
            parts.append(f"server resume pass at {m['server_ready']:4.0f}")
        parts.append(
            f"ws new {m.get('ws_start', -1):4.0f} open {m.get('ws_open', -1):4.0f}"
            f" ready {m.get('ws_ready', -1):4.0f} 1st output {m.get('ws_output', -1):4.0f}"
        )
        parts.append(
            f"prompt {m.get('prompt', -1):4.0f} typing {m.get('typed', -1):4.0f}->{m.get('entered', -1):4.0f}"
        )
        return "; ".join(parts)


def demo_url(service: Service) -> str:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(f"{service.url}/demo", timeout=30)
    except urllib.error.HTTPError as exc:
        if exc.code in (302, 303, 307):
            return service.url + exc.headers["Location"]
        raise
    raise RuntimeError("/demo did not redirect")


def env_show(service: Service, env: str) -> dict:  # type: ignore[type-arg]
    return json.loads(service.cli("env", "show", env, "--json"))  # type: ignore[no-any-return]


def open_page(context, url: str, kind: str, timeout_s: float = 60) -> tuple[Sample, object]:  # type: ignore[no-untyped-def]
    """Open `url` in a new page; time until a typed command's output appears. Returns the sample and page."""
    page = context.new_page()
    needle = "ok-"
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_function(PROMPT_JS, polling=10, timeout=timeout_s * 1000)
    typed = page.evaluate("() => { window.stacklabTerm.term.focus(); return performance.now(); }")
    page.keyboard.type("echo ok-$RANDOM")
    page.keyboard.press("Enter")
    entered = page.evaluate("() => performance.now()")
    page.wait_for_function(OUTPUT_JS, arg=needle, polling=10, timeout=timeout_s * 1000)
    wall_ms = (time.perf_counter() - started) * 1000
    data = page.evaluate(
        """() => ({
          bench: window.__bench,
          origin: performance.timeOrigin,
          dom: performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd,
        })"""
    )
    bench = data["bench"]
    marks: dict[str, float] = {"dom": data["dom"], "prompt": bench["prompt"]}
    marks["typed"], marks["entered"] = typed, entered
    if os.environ.get("BENCH_DEBUG"):
        print(json.dumps(bench["fetches"]))
    marks["origin_epoch_ms"] = data["origin"]
    status_calls = [f for f in bench["fetches"] if f.get("progress")]  # bodies that are a status
    resume = next((f for f in bench["fetches"] if f["url"].endswith("/resume")), None)
    if resume is not None:
        marks["resume_start"], marks["resume_end"] = resume["start"], resume.get("end", -1)
    polls = [f for f in status_calls if f["method"] == "GET"]
    ready = next((f for f in status_calls if f.get("ready")), None)
    via = "none"
    if ready is not None:
        marks["ready_seen"] = ready.get("end", -1)
        via = "POST /resume" if ready is resume else f"GET #{polls.index(ready) + 1}"
    if bench["sockets"]:
        ws = bench["sockets"][0]
        for key in ("start", "open", "ready", "output"):
            if key in ws:
                marks[f"ws_{key}"] = ws[key]
    sample = Sample(kind, bench["output"], wall_ms, marks, len(polls), via)
    return sample, page


def container_of(show: dict) -> tuple[str, str]:  # type: ignore[type-arg]
    """The node's container name and address."""
    nodes = show.get("nodes") or {}
    node, info = next(iter(nodes.items()))
    address = info.get("host") if isinstance(info, dict) else str(info)
    return f"{show['stack']}-{node}", str(address)


def raw_resume_ms(container: str, address: str) -> float:
    """Provider floor: freezer THAWED -> the node's sshd sends its banner; then FROZEN again."""
    state = FREEZER / f"lxc.payload.{container}" / "freezer.state"
    if state.read_text().strip() != "FROZEN":
        raise RuntimeError(f"{container} is not frozen: {state.read_text().strip()}")
    started = time.perf_counter()
    state.write_text("THAWED")
    try:
        while state.read_text().strip() != "THAWED":
            time.sleep(0.001)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((address, 22), timeout=1) as sock:
                    sock.settimeout(2)
                    if sock.recv(64).startswith(b"SSH-"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        return (time.perf_counter() - started) * 1000
    finally:
        state.write_text("FROZEN")
        deadline = time.monotonic() + 10
        while state.read_text().strip() != "FROZEN" and time.monotonic() < deadline:
            state.write_text("FROZEN")
            time.sleep(0.01)


def run(service: Service, rounds: int) -> None:
    from playwright.sync_api import sync_playwright

    url = demo_url(service)
    env = url.split("/lab/", 1)[1].split("#", 1)[0]
    print(f"/demo -> /lab/{env}#token=... (hello lab of a new demo learner)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_init_script(INIT_SCRIPT)
            first, page = open_page(context, url, "launch", timeout_s=300)
            page.close()  # type: ignore[attr-defined]
            print(f"first launch (not counted): usable after {first.total_ms:.0f} ms")
            running: list[Sample] = []
            suspended: list[Sample] = []
            raw: list[float] = []
            suspend_cli: list[float] = []
            for index in range(rounds):
                sample, page = open_page(context, url, "running")
                page.close()  # type: ignore[attr-defined]
                running.append(sample)
                print(f"round {index}: {sample.line()}", flush=True)
                started = time.perf_counter()
                service.cli("env", "suspend", env, "--wait")
                suspend_cli.append((time.perf_counter() - started) * 1000)
                show = env_show(service, env)
                if show["observed"] != "suspended":
                    raise RuntimeError(f"after suspend the lab is {show['observed']}")
                container, address = container_of(show)
                raw.append(raw_resume_ms(container, address))
                print(f"round {index}: raw provider resume (freezer THAWED -> SSH banner): {raw[-1]:.0f} ms")
                sample, page = open_page(context, url, "suspended")
                page.close()  # type: ignore[attr-defined]
                history = env_show(service, env)["history"]
                resumed = [h for h in history if h["to"] == "running" and h["kind"] == "observed"]
                if resumed:
                    sample.marks["server_ready"] = resumed[-1]["at"] * 1000 - sample.marks["origin_epoch_ms"]
                suspended.append(sample)
                print(f"round {index}: {sample.line()}", flush=True)
                print(
                    f"round {index}: (`stacklab env suspend --wait`: {suspend_cli[-1]:.0f} ms with CLI start)"
                )
            context.close()
        finally:
            browser.close()
    report(running, suspended, raw)


def breakdown(samples: list[Sample]) -> str:
    def med(key_from: str, key_to: str) -> float:
        return median([s.marks[key_to] - s.marks[key_from] for s in samples])

    return (
        f"page {median([s.marks['dom'] for s in samples]):.0f}, "
        f"-> status ready seen {med('dom', 'ready_seen'):.0f}, "
        f"-> ws open {med('ready_seen', 'ws_open'):.0f}, "
        f"-> ws ready {med('ws_open', 'ws_ready'):.0f}, "
        f"-> 1st output {med('ws_ready', 'ws_output'):.0f}, "
        f"-> prompt {med('ws_output', 'prompt'):.0f}, "
        f"-> typing starts {med('prompt', 'typed'):.0f}, "
        f"-> Enter sent {med('typed', 'entered'):.0f}, "
        f"-> output {med('entered', 'output_mark'):.0f} ms"
    )


def report(running: list[Sample], suspended: list[Sample], raw: list[float]) -> None:
    for s in (*running, *suspended):
        s.marks["output_mark"] = s.total_ms

    def each(samples: list[float]) -> str:
        return ", ".join(f"{x:.0f}" for x in samples)

    sus = [s.total_ms for s in suspended]
    run_ = [s.total_ms for s in running]
    rows = [
        (
            "suspended lab: page open -> typed command's output",
            f"{median(sus):.0f} ms ({each(sus)})",
            f"{TARGET_MS} ms ({verdict(median(sus), TARGET_MS)})",
            f"running lab: {median(run_):.0f} ms ({each(run_)})",
        ),
        (
            "suspended: polls; ready seen at",
            f"{median([s.polls for s in suspended]):g} GET; "
            f"{median([s.marks['ready_seen'] for s in suspended]):.0f} ms",
            "-",
            f"running: {median([s.polls for s in running]):g} GET; "
            f"{median([s.marks['ready_seen'] for s in running]):.0f} ms",
        ),
        (
            "suspended: server's resume pass started at (page time)",
            f"{median([s.marks.get('server_ready', float('nan')) for s in suspended]):.0f} ms",
            "-",
            f"raw provider resume (thaw -> SSH banner): {median(raw):.0f} ms ({each(raw)})",
        ),
    ]
    print()
    print("breakdown, medians (page time, ms):")
    print(f"  suspended: {breakdown(suspended)}")
    print(f"  running:   {breakdown(running)}")
    print()
    print_table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the local (LXC) provider needs root")
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    if not (ROOT / "src/stacklab/web/static/dist/lab.js").exists():
        sys.exit("the pages are not built: scripts/dev setup")
    from importlib.metadata import version

    chromium_version = os.popen(f"{CHROMIUM} --version 2>/dev/null").read().strip()
    print_machine(
        "lab page open benchmark (suspended lab -> usable prompt, chromium)",
        {
            "lxc": lxc_version(),
            "chromium": chromium_version or "?",
            "playwright": version("playwright"),
            "server": "stacklab serve (uvicorn, 1 process), SQLite (WAL)",
        },
        postgres=False,
    )
    service = Service("stacklab-bench-page-", {"STACKLAB_DEMO_ENABLED": "true"})  # off unless turned on
    try:
        service.start()
        run(service, args.rounds)
    finally:
        service.cleanup()


if __name__ == "__main__":
    main()
