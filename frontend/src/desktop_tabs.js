// The lab page's desktop tabs: beside each node's terminal tab, a "desktop" tab for every node whose lab
// declares a desktop (GET .../access; a node whose lab says terminal: false loses its terminal tab),
// showing noVNC scaled to the panel, a clipboard box that goes both ways, and the same status badge,
// banner and reconnects as the terminals (lab.js owns those).
import { h } from "./api.js";
import { DesktopSession } from "./desktop.js";
import { STATE_TEXT } from "./states.js";

function copyToBrowser(text) {
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).catch(() => {});
}

export class DesktopTabs {
  /**
   * @param {object} o
   * @param {string} o.envId
   * @param {import("./api.js").Api} o.api
   * @param {boolean} o.readOnly
   * @param {() => void} o.onNotRunning
   * @param {() => Promise<boolean>} o.onAuthFailed
   */
  constructor(o) {
    Object.assign(this, o);
    this.nodes = [];
    this.views = new Map(); // node -> {session, host, clip}
    this.active = null;
    window.stacklabDesktop = this; // for tests and the curious: states and the active node
  }

  /** Add a desktop tab to `tabs` for each of `nodes` that has one, drop the terminal tabs of nodes that
   * offer none; shows the tab bar when there is more than one tab. */
  async render(nodes, tabs, bar) {
    let access = [];
    try {
      const answer = await this.api.get(`/api/v1/environments/${encodeURIComponent(this.envId)}/access`);
      access = answer.nodes.filter((entry) => nodes.includes(entry.node));
    } catch (exc) {
      console.warn("stacklab: what the nodes offer did not load:", exc);
    }
    const listed = access.filter((entry) => entry.desktop).map((entry) => entry.node);
    let lostTerminal = null;
    for (const entry of access) {
      const tab = entry.terminal ? null : tabs.querySelector(`.node-tab:not([data-kind])[data-node="${entry.node}"]`);
      if (!tab) continue;
      if (tab.getAttribute("aria-selected") === "true") lostTerminal = entry.node;
      tab.remove();
      document.getElementById(`term-${entry.node}`)?.setAttribute("hidden", "");
    }
    for (const [node, view] of this.views) {
      if (!listed.includes(node)) {
        view.session.disconnect();
        view.host.remove();
        this.views.delete(node);
      }
    }
    this.nodes = listed;
    const terminalTabs = tabs.querySelectorAll(".node-tab:not([data-kind])").length;
    for (const node of listed) {
      tabs.querySelector(`[data-kind=desktop][data-node="${node}"]`)?.remove();
      tabs.append(
        h(
          "button",
          {
            type: "button",
            role: "tab",
            id: `tab-desktop-${node}`,
            class: "node-tab desktop-tab",
            "data-node": node,
            "data-kind": "desktop",
            "aria-controls": `desk-${node}`,
            "aria-selected": "false",
            tabIndex: -1,
            onclick: () => this.select(node),
          },
          `${node} · desktop`,
        ),
      );
    }
    bar.hidden = tabs.children.length < 2;
    const next = this.active || lostTerminal || (terminalTabs ? null : listed[0]);
    if (next && listed.includes(next)) this.select(next);
  }

  select(node) {
    this.active = node;
    for (const tab of document.querySelectorAll(".node-tab")) {
      const selected = tab.dataset.kind === "desktop" && tab.dataset.node === node;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
    }
    const view = this.views.get(node) || this.create(node);
    for (const host of document.getElementById("terminals").children) host.hidden = host !== view.host;
    view.session.connect();
    this.showState(node, view.session.state, null);
    view.session.focus();
  }

  create(node) {
    const screen = h("div", { class: "desktop-screen" });
    const clip = h("textarea", {
      class: "desktop-clipboard",
      rows: 2,
      "aria-label": `Clipboard of the desktop on ${node}`,
      placeholder: this.readOnly ? "The desktop's clipboard" : "Clipboard: paste here to send it to the desktop",
      readOnly: this.readOnly,
      oninput: () => view.session.paste(clip.value),
    });
    const host = h(
      "div",
      { class: "term-host desktop-host", id: `desk-${node}`, role: "tabpanel", "aria-label": `Desktop of ${node}` },
      screen,
      h("details", { class: "desktop-clip" }, h("summary", {}, "Clipboard"), clip),
    );
    document.getElementById("terminals").append(host);
    const session = new DesktopSession({
      envId: this.envId,
      node,
      container: screen,
      readOnly: this.readOnly,
      getToken: () => this.api.token,
      onState: (state, detail) => this.showState(node, state, detail),
      onNotRunning: () => this.onNotRunning(),
      onAuthFailed: () => this.onAuthFailed(),
      onClipboard: (text) => {
        clip.value = text;
        copyToBrowser(text);
      },
    });
    const view = { session, host, clip };
    this.views.set(node, view);
    return view;
  }

  showState(node, state, detail) {
    if (node !== this.active || this.views.get(node)?.host.hidden) return;
    const badge = document.getElementById("conn-state");
    badge.textContent = STATE_TEXT[state] ?? state;
    badge.dataset.state = state;
    const banner = document.getElementById("conn-banner");
    if (state === "reconnecting" || state === "failed") {
      const text = state === "reconnecting" ? `Desktop connection lost — reconnecting…${detail ? ` (${detail})` : ""}` : detail || "The desktop was disconnected.";
      const retry = h("button", { type: "button", onclick: () => this.views.get(node).session.connect() }, "Retry now");
      banner.replaceChildren(h("span", { class: state === "reconnecting" ? "spinner" : "", "aria-hidden": "true" }), h("span", {}, text), retry);
      banner.dataset.state = state;
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
  }

  /** The desktop panels step aside (a terminal tab was chosen). */
  hide() {
    this.active = null;
    for (const view of this.views.values()) view.host.hidden = true;
  }

  disconnect() {
    for (const view of this.views.values()) view.session.disconnect();
  }

  /** The connection state of the desktop on `node` ("idle" before it was opened). */
  state(node) {
    return this.views.get(node)?.session.state ?? "idle";
  }
}
