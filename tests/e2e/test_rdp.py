"""RDP desktops on real LXC: the lab page's desktop tab shows an RDP server's screen (xrdp on the node,
bridged to VNC there by FreeRDP in a private Xvnc, relayed by the service like any VNC desktop).

One RDP lab (examples/rdp.yaml) serves every test of this module, in order: the learner types into the
xterm of the RDP session, a second opening reuses the running bridge, a read-only watcher's input never
reaches the node, a pause and resume stop the bridge and the next opening finds the session as it was,
and a lab whose RDP login is wrong tells the learner so instead of retrying.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from tests.e2e.conftest import ROOT, Stacklab
from tests.e2e.helpers import wait_for
from tests.e2e.test_desktop import (
    NODE,
    XTERM_AT,
    DesktopLab,
    click_at,
    open_desktop,
    run_async,
    settled_blocks,
)
from tests.support.rfb import RfbClient

from stacklab.secrets import Vault, load_or_create_key
from stacklab.web.tokens import TokenSigner

pytestmark = [pytest.mark.lxc, pytest.mark.e2e, pytest.mark.network]

LAB = ROOT / "src" / "stacklab" / "examples" / "rdp.yaml"
SESSION = "DISPLAY=:10"  # the display xrdp's session manager gives the first RDP session (its Xvnc)
BRIDGE_PID = "cat ~/.stacklab/rdp/3389/pid 2>/dev/null || true"


@pytest.fixture(scope="module")
def lab(stacklab: Stacklab) -> Iterator[DesktopLab]:
    stacklab.cli("env", "launch", str(LAB), "--learner", "rita", "--course", "gui", "--wait")
    envs = json.loads(stacklab.cli("env", "list", "--json"))
    env_id = next(e["id"] for e in envs if e["learner"] == "rita" and e["lab"] == "rdp-lab")
    key = load_or_create_key("", stacklab.env["STACKLAB_DATA_DIR"])
    yield DesktopLab(stacklab, env_id, TokenSigner(Vault(key).derive("access-tokens")))
    stacklab.cli("env", "delete", env_id, "--wait")


def focus_session_xterm(page, canvas, lab: DesktopLab) -> None:  # type: ignore[no-untyped-def]
    """Click into the RDP session's xterm until its window manager says it has the focus."""
    wait_for(lambda: '"xterm"' in lab.exec(f"{SESSION} xwininfo -root -tree 2>&1"), 30, "the session's xterm")
    settled_blocks(page)

    def focused() -> bool:
        click_at(page, canvas, *XTERM_AT)
        active = lab.exec(f"{SESSION} xprop -root _NET_ACTIVE_WINDOW").split("#")[-1].strip()
        return active not in ("", "0x0") and "xterm" in lab.exec(f"{SESSION} xprop -id {active} WM_CLASS")

    wait_for(focused, 20, "the session's xterm to take the focus", interval_s=0.5)


def test_type_into_the_rdp_session_and_reopen_the_same_bridge(lab: DesktopLab, context) -> None:  # type: ignore[no-untyped-def]
    page = context.new_page()
    canvas = open_desktop(page, lab, lab.token())
    bridge = lab.exec(BRIDGE_PID).strip()
    assert bridge, "no bridge runs on the node"
    focus_session_xterm(page, canvas, lab)
    page.keyboard.type('echo "hello rdp" > ~/note.txt')
    page.keyboard.press("Enter")
    wait_for(lambda: lab.exec("cat ~/note.txt 2>/dev/null || true").strip() == "hello rdp", 15, "the note")
    assert "note" in lab.service.cli("env", "check", lab.env_id)
    # The password is on no command line on the node (it went to xfreerdp on its stdin).
    secret = lab.exec("sudo cat /etc/stacklab/rdp-password").strip()
    cmdlines = lab.exec("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")
    assert secret and secret not in cmdlines

    # The clipboard, both ways, through the bridge's Xvnc, FreeRDP's clipboard channel and xrdp's chansrv:
    # the page's box -> the session's CLIPBOARD (what applications paste with Ctrl+V), and back.
    page.locator(f"#desk-{NODE} .desktop-clip summary").click()
    page.locator(f"#desk-{NODE} .desktop-clipboard").fill("to-the-session")
    wait_for(
        lambda: (
            lab.exec(f"{SESSION} timeout 5 xclip -o -selection clipboard 2>/dev/null || true").strip()
            == "to-the-session"
        ),
        20,
        "the page's clipboard in the RDP session",
    )
    lab.exec(f"echo -n from-the-session | {SESSION} timeout 30 xclip -selection clipboard >/dev/null 2>&1 &")
    page.wait_for_function(
        f"() => document.querySelector('#desk-{NODE} .desktop-clipboard').value === 'from-the-session'"
    )

    page.close()  # a reconnect (here: a new page) reuses the running bridge
    page = context.new_page()
    open_desktop(page, lab, lab.token())
    assert lab.exec(BRIDGE_PID).strip() == bridge
    page.close()


def test_read_only_watcher_cannot_type_into_the_rdp_session(lab: DesktopLab, context) -> None:  # type: ignore[no-untyped-def]
    page = context.new_page()
    canvas = open_desktop(page, lab, lab.token(read_only=True))
    click_at(page, canvas, *XTERM_AT)
    page.keyboard.type("echo page > ~/watcher-page.txt")
    page.keyboard.press("Enter")

    async def type_raw(token: str, text: str) -> None:
        # A client that ignores the page's view-only mode: the service must drop its input itself.
        client = await RfbClient.open(lab.socket(token), origin=lab.service.url)
        try:
            await client.click(*XTERM_AT)
            await asyncio.sleep(0.5)
            await client.type_text(text)
            await client.request(incremental=False)
            await client.update()
        finally:
            await client.close()

    run_async(type_raw(lab.token(read_only=True), "echo raw > ~/watcher-raw.txt\n"))
    run_async(type_raw(lab.token(), "echo learner > ~/learner-raw.txt\n"))
    wait_for(lambda: lab.exec("cat ~/learner-raw.txt 2>/dev/null || true").strip() == "learner", 15, "input")
    files = lab.exec("ls ~").split()
    assert "watcher-page.txt" not in files and "watcher-raw.txt" not in files
    page.close()


def test_pause_and_resume_stop_the_bridge_and_keep_the_session(lab: DesktopLab, context) -> None:  # type: ignore[no-untyped-def]
    session_xterm = lab.exec("pgrep -x xterm").strip()
    lab.service.cli("env", "suspend", lab.env_id, "--wait")
    lab.service.cli("env", "resume", lab.env_id, "--wait")
    assert not lab.exec("pgrep -x xfreerdp || true").strip(), "the bridge still runs after the resume"
    page = context.new_page()
    open_desktop(page, lab, lab.token())  # a fresh bridge, logged in again: xrdp hands it the same session
    assert lab.exec(BRIDGE_PID).strip()
    assert lab.exec("pgrep -x xterm").strip() == session_xterm
    page.close()


def test_a_wrong_rdp_login_is_told_to_the_learner(lab: DesktopLab, context) -> None:  # type: ignore[no-untyped-def]
    # The node's password no longer matches the lab's secret; the running bridge ends (its RDP client
    # quits), so the next opening logs in again and is refused.
    lab.exec("echo learner:not-the-secret | sudo chpasswd && pkill -x xfreerdp; true")
    wait_for(
        lambda: "exited" in lab.exec("cat ~/.stacklab/rdp/3389/state 2>/dev/null || true"), 10, "the end"
    )
    page = context.new_page()
    try:
        page.goto(lab.url(lab.token()))
        page.locator(f"#tab-desktop-{NODE}").click()
        page.wait_for_function(f"() => window.stacklabDesktop.state('{NODE}') === 'failed'", timeout=30_000)
        banner = page.locator("#conn-banner").inner_text()
        assert "refused the login of learner" in banner and "wrong user name or password" in banner
    finally:
        page.close()
        lab.exec("printf 'learner:%s\\n' \"$(sudo cat /etc/stacklab/rdp-password)\" | sudo chpasswd")
