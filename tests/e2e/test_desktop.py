"""Graphical labs on real LXC: the lab page's desktop tab (noVNC through the service's RFB relay over SSH).

One desktop lab (examples/desktop.yaml) serves every test of this module, in order: the learner types into
the xterm on the desktop, a suspend and resume keep the window as it was, a read-only watcher's input
never reaches the node, and a token for another learner's lab is refused.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from tests.e2e.conftest import ROOT, Stacklab
from tests.e2e.helpers import wait_for
from tests.support.rfb import RfbClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stacklab.access.desktop import open_node
from stacklab.config import load_settings
from stacklab.errors import AccessError
from stacklab.secrets import Vault, load_or_create_key
from stacklab.web.tokens import TokenSigner
from stacklab.wiring import build_app

pytestmark = [pytest.mark.lxc, pytest.mark.e2e, pytest.mark.network]

LAB = ROOT / "src" / "stacklab" / "examples" / "desktop.yaml"
NODE = "desk"
XTERM_AT = (300, 250)  # a point inside the xterm window (desktop pixels; it is at +40+40, 100x30 chars)


T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from a test whose thread already runs Playwright's event loop."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if errors:
        raise errors[0]
    return result[0]


@dataclass(frozen=True)
class DesktopLab:
    service: Stacklab
    env_id: str
    signer: TokenSigner

    def token(self, *, read_only: bool = False, env_id: str | None = None, learner: str = "dana") -> str:
        return self.signer.issue("learner", learner, env_id or self.env_id, 600, read_only, 0)

    def exec(self, command: str) -> str:
        return self.service.cli("env", "exec", self.env_id, "--node", NODE, "--", command, timeout_s=60)

    def url(self, token: str) -> str:
        return f"{self.service.url}/lab/{self.env_id}#token={token}"

    def socket(self, token: str) -> str:
        ws = self.service.url.replace("http://", "ws://")
        return f"{ws}/api/v1/environments/{self.env_id}/desktop/{NODE}?token={token}"


@pytest.fixture(scope="module")
def lab(stacklab: Stacklab) -> Iterator[DesktopLab]:
    stacklab.cli("env", "launch", str(LAB), "--learner", "dana", "--course", "gui", "--wait")
    envs = json.loads(stacklab.cli("env", "list", "--json"))
    env_id = next(e["id"] for e in envs if e["learner"] == "dana" and e["lab"] == "desktop-lab")
    key = load_or_create_key("", stacklab.env["STACKLAB_DATA_DIR"])
    desktop = DesktopLab(stacklab, env_id, TokenSigner(Vault(key).derive("access-tokens")))
    wait_for(lambda: _has_xterm(desktop), 60, "the xterm window on the desktop")
    yield desktop
    stacklab.cli("env", "delete", env_id, "--wait")


def _has_xterm(lab: DesktopLab) -> bool:
    try:
        return '"xterm"' in lab.exec("DISPLAY=:1 xwininfo -root -tree")
    except AssertionError:
        return False


def open_desktop(page, lab: DesktopLab, token: str) -> object:  # type: ignore[no-untyped-def]
    """The lab page with its desktop tab open and connected; returns the desktop's canvas."""
    page.goto(lab.url(token))
    page.locator(f"#tab-desktop-{NODE}").click()
    page.wait_for_function(f"() => window.stacklabDesktop.state('{NODE}') === 'connected'", timeout=30_000)
    canvas = page.locator(f"#desk-{NODE} canvas").first
    canvas.wait_for()
    return canvas


# The remote screen as noVNC holds it (its canvas has the desktop's own pixels; the page only scales it):
# the mean brightness of each 16x16 block. Means, not checksums: noVNC asks for Tight encoding, whose JPEG
# rectangles (title bars, gradients) differ by a few levels from one connection to the next.
BLOCK_MEANS = """() => {
  const canvas = document.querySelector('#desk-desk canvas');
  const { width, height } = canvas;
  const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  const across = Math.ceil(width / 16);
  const sums = new Array(across * Math.ceil(height / 16)).fill(0);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      sums[(y >> 4) * across + (x >> 4)] += (data[i] + data[i + 1] + data[i + 2]) / 3;
    }
  }
  return sums.map((sum) => Math.round(sum / 256));
}"""


RECORD_STATES = """() => {
  const tabs = window.stacklabDesktop;
  const show = tabs.showState.bind(tabs);
  window.desktopStates = [];
  tabs.showState = (node, state, detail) => { window.desktopStates.push(state); show(node, state, detail); };
}"""


LET_GO = "() => window.desktopStates.some((state) => state === 'paused' || state === 'idle')"


def changed_blocks(before: list[int], after: list[int]) -> int:
    return sum(abs(a - b) > 12 for a, b in zip(before, after, strict=True))


def settled_blocks(page) -> list[int]:  # type: ignore[no-untyped-def]
    """The screen once two looks a moment apart agree (updates still arriving change it)."""
    previous: list[list[int]] = [page.evaluate(BLOCK_MEANS)]

    def same() -> bool:
        page.wait_for_timeout(300)
        current = page.evaluate(BLOCK_MEANS)
        stable = current == previous[0]
        previous[0] = current
        return stable

    wait_for(same, 15, "the desktop to stop changing")
    return previous[0]


def click_at(page, canvas, x: int, y: int, button: str = "left") -> None:  # type: ignore[no-untyped-def]
    """Click the desktop at its own pixel (x, y), wherever the page has scaled it to."""
    box = canvas.bounding_box()
    width, height = page.evaluate(
        "() => { const c = document.querySelector('#desk-desk canvas'); return [c.width, c.height]; }"
    )
    page.mouse.click(
        box["x"] + x * box["width"] / width, box["y"] + y * box["height"] / height, button=button
    )


def focus_xterm(page, canvas, lab: DesktopLab) -> None:  # type: ignore[no-untyped-def]
    """Click into the xterm until the window manager says it has the focus (as a learner clicks again)."""
    settled_blocks(page)

    def focused() -> bool:
        click_at(page, canvas, *XTERM_AT)
        active = lab.exec("DISPLAY=:1 xprop -root _NET_ACTIVE_WINDOW").split("#")[-1].strip()
        return active not in ("", "0x0") and "xterm" in lab.exec(f"DISPLAY=:1 xprop -id {active} WM_CLASS")

    wait_for(focused, 20, "the xterm to take the focus", interval_s=0.5)


def test_type_into_the_desktop_then_suspend_and_resume_keep_it(lab: DesktopLab, context) -> None:  # type: ignore[no-untyped-def]
    page = context.new_page()
    canvas = open_desktop(page, lab, lab.token())
    focus_xterm(page, canvas, lab)
    page.keyboard.type('echo "hello desktop" > ~/note.txt')
    page.keyboard.press("Enter")
    wait_for(
        lambda: lab.exec("cat ~/note.txt 2>/dev/null || true").strip() == "hello desktop", 15, "the note"
    )
    assert "note" in lab.service.cli("env", "check", lab.env_id)

    # The clipboard, both ways: the page's box -> the desktop (pasted into the xterm with the middle
    # button), and the desktop's clipboard -> the page's box. The xterm asks the VNC server for the
    # selection, which asks the page: the paste lands a moment after the click, so it is the last thing
    # typed into a waiting `cat` (its newline ends the line), and Ctrl+D ends `cat` once the file has it.
    page.locator(f"#desk-{NODE} .desktop-clip summary").click()
    page.locator(f"#desk-{NODE} .desktop-clipboard").fill("from-the-browser\n")
    focus_xterm(page, canvas, lab)
    page.keyboard.type("cat > ~/clip.txt")
    page.keyboard.press("Enter")
    click_at(page, canvas, *XTERM_AT, button="middle")
    try:
        wait_for(
            lambda: lab.exec("cat ~/clip.txt 2>/dev/null || true").strip() == "from-the-browser", 15, "paste"
        )
    finally:
        page.keyboard.press("Control+d")
    lab.exec("echo -n from-the-desktop | DISPLAY=:1 xclip -selection clipboard -loops 1 >/dev/null 2>&1 &")
    page.wait_for_function(
        f"() => document.querySelector('#desk-{NODE} .desktop-clipboard').value === 'from-the-desktop'"
    )
    page.mouse.move(0, 0)  # the pointer off the desktop: only the remote screen is compared
    before = settled_blocks(page)

    page.evaluate(RECORD_STATES)
    lab.service.cli("env", "suspend", lab.env_id, "--wait")  # from another process: the service notices
    try:
        # The desktop lets go: closed by the service ("paused"), or by the page that saw the lab pause.
        page.wait_for_function(LET_GO, timeout=15_000)
    finally:
        lab.service.cli("env", "resume", lab.env_id, "--wait")
    assert lab.exec("pgrep -x xterm").strip(), "the xterm process did not survive the suspend"

    page.close()  # a fresh page after the pause: what it shows comes from the resumed node
    page = context.new_page()
    open_desktop(page, lab, lab.token())
    page.mouse.move(0, 0)
    after = settled_blocks(page)
    changed = changed_blocks(before, after)
    assert changed <= 0.01 * len(before), f"the desktop changed across suspend/resume: {changed} blocks"
    assert changed_blocks(before, [0] * len(before)) > 100, "the screen compared was black: nothing shown"


def test_read_only_watcher_cannot_type_or_point(lab: DesktopLab, context) -> None:  # type: ignore[no-untyped-def]
    page = context.new_page()
    canvas = open_desktop(page, lab, lab.token(read_only=True))
    click_at(page, canvas, *XTERM_AT)
    page.keyboard.type("echo page > ~/watcher-page.txt")
    page.keyboard.press("Enter")

    async def type_raw(token: str, text: str) -> None:
        # A client that ignores the page's view-only mode: the server must drop its input itself.
        client = await RfbClient.open(lab.socket(token), origin=lab.service.url)
        try:
            await client.click(*XTERM_AT)
            await asyncio.sleep(0.5)  # the window manager moves the focus on the click
            await client.type_text(text)
            await client.request(incremental=False)
            await client.update()  # the server has read what came before this request
        finally:
            await client.close()

    run_async(type_raw(lab.token(read_only=True), "echo raw > ~/watcher-raw.txt\n"))
    run_async(type_raw(lab.token(), "echo learner > ~/learner-raw.txt\n"))  # the same client as a learner
    wait_for(lambda: lab.exec("cat ~/learner-raw.txt 2>/dev/null || true").strip() == "learner", 15, "input")
    files = lab.exec("ls ~").split()
    assert "learner-raw.txt" in files
    assert "watcher-page.txt" not in files and "watcher-raw.txt" not in files


def test_a_vnc_password_is_answered_by_the_service(lab: DesktopLab, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A VNC server that asks for a password (VncAuth): the service's side of the relay logs in with it."""
    lab.exec(
        "echo s3cretpw | vncpasswd -f > /tmp/vncpw && (setsid Xvnc :2 -localhost -rfbport 5902 "
        "-SecurityTypes VncAuth -PasswordFile /tmp/vncpw >/dev/null 2>&1 < /dev/null &)"
    )
    wait_for(lambda: ":5902 " in lab.exec("ss -ltn"), 10, "the second VNC server")
    for name, value in lab.service.env.items():
        if name.startswith("STACKLAB_"):
            monkeypatch.setenv(name, value)
    stack = build_app(load_settings())  # the service's own view of the lab: its key, its node

    async def logins() -> list[str]:
        record = stack.environments.resolve(lab.env_id)
        target = stack.controller.targets(record, stack.environments.lab_of(record))[NODE]
        results = []
        for password in ("s3cretpw", "wrong", None):
            try:
                (await open_node(target, 5902, password, 5)).close()
                results.append("logged in")
            except AccessError as refused:
                results.append(str(refused).split(":")[0])
        return results

    try:
        assert run_async(logins()) == [
            "logged in",
            "the VNC server refused the login",
            "the VNC server offers security types [2], not None (1)",
        ]
    finally:
        stack.close()
        lab.exec("pkill -f '^Xvnc :2' || true")


def test_a_token_for_another_learner_is_refused(lab: DesktopLab) -> None:
    hello = ROOT / "src" / "stacklab" / "examples" / "hello.yaml"
    lab.service.cli("env", "launch", str(hello), "--learner", "eve", "--course", "gui")
    envs = json.loads(lab.service.cli("env", "list", "--json"))
    eves = next(e["id"] for e in envs if e["learner"] == "eve")

    async def attempt() -> tuple[object, int | None]:
        token = lab.token(env_id=eves, learner="eve")  # eve's own lab: good there, not on dana's desktop
        async with connect(lab.socket(token), origin=lab.service.url) as ws:
            first = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return first, ws.close_code

    try:
        first, code = run_async(attempt())
    finally:
        lab.service.cli("env", "delete", eves, "--wait")
    assert first == {"type": "error", "message": "this token does not grant access to that environment"}
    assert code == 4403
