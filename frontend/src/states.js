// What the lab page's connection badge says for each state of a terminal or desktop session.
export const STATE_TEXT = {
  idle: "",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  paused: "Lab paused",
  ended: "Shell ended",
  taken: "Open in another tab",
  failed: "Disconnected",
};
