# stacklab's RDP-to-VNC bridge, run on a lab node as the lab's login user (stacklab.access.rdp sends it
# over SSH; the node needs Xvnc from tigervnc-standalone-server, xfreerdp from freerdp2-x11, and xauth).
#
#   open PORT USER   (the password on stdin): make sure a bridge to the RDP server on 127.0.0.1:PORT,
#                    logged in as USER, runs; print "ready SOCKET" (the bridge's VNC server, a unix socket
#                    only this user may open), or "refused MESSAGE" / "failed MESSAGE" and exit 3 / 4.
#   stop             end every bridge of this user (before a pause, after a resume).
#
# A bridge is a private Xvnc display (no TCP port; X clients need its cookie) with FreeRDP's X11 client
# full-screen on it. The password goes from this script's stdin to xfreerdp's (/from-stdin:force): it is
# on no command line and in no file. A running bridge with the same port and user is reused; one whose
# user changed, or whose RDP client ended, is replaced.
set -u
umask 077
action=${1:-}
base="$HOME/.stacklab/rdp"
mkdir -p "$base"
chmod 700 "$HOME/.stacklab" "$base"
LOGIN_WAIT_S=${STACKLAB_RDP_LOGIN_WAIT_S:-6}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

stop_one() { # the bridge in dir $1: its process group (the session, Xvnc, xfreerdp), then the dir
    local pid
    pid=$(cat "$1/pid" 2>/dev/null) || pid=
    if alive "$pid"; then
        kill -TERM -- "-$pid" 2>/dev/null
        for _ in $(seq 30); do alive "$pid" || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null
    fi
    rm -rf "$1"
}

session() { # run in its own session: Xvnc, then xfreerdp on it; the end of either ends both
    local d=$1 n=$2 port=$3 user=$4
    echo $$ >"$d/pid"
    unset STACKLAB_RDP_BRIDGE
    export DISPLAY=":$n" XAUTHORITY="$d/xauth"
    Xvnc ":$n" -auth "$d/xauth" -nolisten tcp -localhost -rfbport -1 -rfbunixpath "$d/vnc.sock" \
        -rfbunixmode 0600 -SecurityTypes None -AlwaysShared -geometry 1280x800 -depth 24 \
        -desktop "RDP $user@127.0.0.1:$port" </dev/null >"$d/xvnc.log" 2>&1 &
    local xvnc=$!
    for _ in $(seq 100); do
        [ -S "$d/vnc.sock" ] && [ -S "/tmp/.X11-unix/X$n" ] && break
        sleep 0.1
    done
    xfreerdp "/v:127.0.0.1:$port" "/u:$user" /from-stdin:force /cert:ignore /f /log-level:WARN \
        <&3 >"$d/rdp.log" 2>&1 &
    local rdp=$!
    exec 3<&-
    echo running >"$d/state"
    wait "$rdp"
    echo "exited $?" >"$d/state"
    kill "$xvnc" 2>/dev/null
    wait
}

case $action in
session)
    exec 3<&0 </dev/null
    session "$2" "$3" "$4" "$5"
    exit 0
    ;;
stop)
    exec 9>"$base/.lock"
    flock -w 30 9
    for d in "$base"/*/; do
        [ -d "$d" ] && stop_one "${d%/}"
    done
    echo stopped
    exit 0
    ;;
open) ;;
*)
    echo "failed unknown action $action"
    exit 4
    ;;
esac

port=$2 user=$3
IFS= read -r password || {
    echo "failed no password on stdin"
    exit 4
}
for tool in Xvnc xfreerdp xauth; do
    command -v "$tool" >/dev/null || {
        echo "failed $tool is not installed on this node (packages: tigervnc-standalone-server freerdp2-x11 xauth)"
        exit 4
    }
done
exec 9>"$base/.lock"
flock -w 30 9
d="$base/$port"
key="$port $user" # nothing derived from the password is kept on the node
if [ -S "$d/vnc.sock" ] && [ "$(cat "$d/key" 2>/dev/null)" = "$key" ] &&
    [ "$(cat "$d/state" 2>/dev/null)" = running ] && alive "$(cat "$d/pid" 2>/dev/null)"; then
    echo "ready $d/vnc.sock"
    exit 0
fi
stop_one "$d"
mkdir -p "$d"
echo "$key" >"$d/key"
for n in $(seq 20 99); do
    [ -e "/tmp/.X$n-lock" ] || [ -e "/tmp/.X11-unix/X$n" ] || break
done
xauth -q -f "$d/xauth" add ":$n" . "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$password" | setsid bash -c "$STACKLAB_RDP_BRIDGE" rdp-bridge session "$d" "$n" "$port" "$user" \
    >/dev/null 2>&1 9>&- &
unset password
# Up when the RDP login went through: the server said the user is logged on (its device channel does so),
# or the client still runs LOGIN_WAIT_S after it started (a refused login ends it within about 2 s).
for _ in $(seq $((LOGIN_WAIT_S * 10))); do
    state=$(cat "$d/state" 2>/dev/null) || state=
    case $state in exited*) break ;; esac
    if [ "$state" = running ] && grep -q USER_LOGGEDON "$d/rdp.log" 2>/dev/null; then break; fi
    sleep 0.1
done
state=$(cat "$d/state" 2>/dev/null) || state=
case $state in
running)
    echo "ready $d/vnc.sock"
    exit 0
    ;;
"exited "*)
    code=${state#exited }
    last=$(grep -v 'com.freerdp.utils' "$d/rdp.log" | grep -E 'ERRINFO|ERRCONNECT|error|Error' | tail -1 | sed 's/^\[[^]]*\] *\[[^]]*\] *//' | cut -c1-300)
    case $code in # FreeRDP's xfreerdp exit codes (client/X11/xfreerdp.h); 12: xrdp's logoff at login
    12 | 132 | 134 | 135)
        echo "refused the RDP server on port $port refused the login of $user (wrong user name or password?)"
        exit 3
        ;;
    131 | 141 | 147)
        echo "failed the RDP client could not connect to 127.0.0.1:$port (is the RDP server running?) $last"
        exit 4
        ;;
    *)
        echo "failed the RDP client ended at once (exit $code) $last"
        exit 4
        ;;
    esac
    ;;
*)
    echo "failed the bridge did not start: $(tail -3 "$d/xvnc.log" 2>/dev/null | tr '\n' ' ')"
    exit 4
    ;;
esac
