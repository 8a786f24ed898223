// What a lab page's session (a terminal or a desktop) does when its websocket closes, by close code
// (docs/web-protocol.md), and how it tries again: one rule for both, so that they behave alike.
export const BACKOFF_MS = [300, 1000, 2000, 4000, 8000, 15000];
const EXPIRED = "Your access has expired. Open the lab again from your course.";

/**
 * Act on a close: 4409 (the lab is not running) -> "paused" and `onNotRunning()`; a code of `fatal` ->
 * "failed" with its text; 4401 -> refresh the token, then try again ("failed" if it cannot be refreshed);
 * anything else -> try again with backoff.
 * @param {object} session with wanted, attempt, timers, lastError, setState, connect, onNotRunning,
 *   onAuthFailed and onTrouble
 * @param {number} code
 * @param {string} reason
 * @param {Record<number, string>} fatal close codes not worth retrying, with what to tell the learner
 */
export async function afterClose(session, code, reason, fatal) {
  if (code === 4409) {
    session.wanted = false;
    session.setState("paused");
    session.onNotRunning();
    return;
  }
  if (fatal[code]) {
    session.wanted = false;
    session.setState("failed", fatal[code]);
    return;
  }
  if (code === 4401 && !(await session.onAuthFailed().catch(() => false))) {
    session.wanted = false;
    session.setState("failed", EXPIRED);
    return;
  }
  retryLater(session, reason || session.lastError);
}

/** Connect again after the next backoff step (with +-20 % jitter); says "reconnecting" meanwhile. */
export function retryLater(session, detail) {
  const delay = BACKOFF_MS[Math.min(session.attempt, BACKOFF_MS.length - 1)];
  const jittered = Math.round(delay * (0.8 + Math.random() * 0.4));
  session.attempt += 1;
  session.setState("reconnecting", detail);
  if (session.attempt > 1) session.onTrouble(session.attempt);
  clearTimeout(session.timers.retry);
  session.timers.retry = setTimeout(() => {
    if (session.wanted) session.connect();
  }, jittered);
}
