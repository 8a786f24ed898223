"""Replacing an environment's login key on its nodes, over SSH (a warm pool's hand-over: envs/handover.py).

On each node the login user's `~/.ssh/authorized_keys` loses the old public key and gains the new one,
other lines kept (keys a lab's setup added); the local provider's first-boot copy
(`/etc/stacklab/authorized_keys`, read again only if first boot ran again) gets the new key too, through
sudo when the user has it. The script is idempotent: it is run with whichever key the node still takes, so a
rotation cut short (a crash between nodes) is finished by running it again. Once every node took the new
key, it is checked to log in; only then the caller forgets the old key.
"""

from __future__ import annotations

import asyncio
import shlex

from stacklab.access.ssh import Target, run
from stacklab.errors import AccessError

SCRIPT = r"""set -u
umask 077
new=$1; old=$2
mkdir -p "$HOME/.ssh"
f="$HOME/.ssh/authorized_keys"
t=$(mktemp "$HOME/.ssh/.authorized_keys.XXXXXX") || exit 1
if [ -f "$f" ] && [ -n "$old" ]; then
    grep -vF -e "$old" -e "$new" "$f" >"$t"
elif [ -f "$f" ]; then
    grep -vF -e "$new" "$f" >"$t"
fi
printf '%s\n' "$new" >>"$t"
mv -f "$t" "$f" || exit 1
if [ -f /etc/stacklab/authorized_keys ] && sudo -n true 2>/dev/null; then
    printf '%s\n' "$new" | sudo -n tee /etc/stacklab/authorized_keys >/dev/null
fi
exit 0
"""


def key_body(public_key: str) -> str:
    """The base64 body of an OpenSSH public key line (type, body, comment): what identifies the key."""
    parts = public_key.split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    return parts[1]


async def _install(old: Target, new: Target, new_public: str, old_public: str, timeout_s: float) -> None:
    command = f"bash -c {shlex.quote(SCRIPT)} rotate {shlex.quote(new_public)} {shlex.quote(old_public)}"
    try:
        result = await run(old, command, timeout_s=timeout_s, connect_timeout_s=timeout_s)
    except AccessError:  # the old key is gone already: an earlier attempt got this far
        result = await run(new, command, timeout_s=timeout_s, connect_timeout_s=timeout_s)
    if result.exit_status != 0:
        detail = (result.stderr or result.stdout).strip()[-300:]
        raise AccessError(
            f"rotating the login key on {old.host} failed (exit {result.exit_status}): {detail}"
        )
    check = await run(new, "true", timeout_s=timeout_s, connect_timeout_s=timeout_s)
    if check.exit_status != 0:
        raise AccessError(f"the new login key does not log in to {new.host}")


async def rotate_login_key(
    old: dict[str, Target], new: dict[str, Target], new_public: str, old_public: str, timeout_s: float
) -> None:
    """Install `new_public` in place of `old_public` on every node (`old`/`new`: the nodes' targets with
    the old and the new private key) and check that the new key logs in; AccessError when a node fails."""
    body = key_body(old_public) if old_public.strip() else ""
    await asyncio.gather(
        *(_install(old[name], new[name], new_public.strip(), body, timeout_s) for name in old)
    )
