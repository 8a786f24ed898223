#!/usr/bin/env bash
# Stop exactly what start.sh started: the process groups recorded in $STACKLAB_HEAT_HOME/run/*.pid.
#
#   stop.sh                        stop every service (TERM, then KILL after a grace period)
#   stop.sh [--kill] NAME...       stop only these (keystone, heat-api, heat-engine, heat-small-api,
#                                  heat-small-engine); --kill sends SIGKILL at once, as a crash would.
# start.sh starts again whatever is not running (and waits until it answers).
H=${STACKLAB_HEAT_HOME:-/var/lib/stacklab-heat}
SERVICES=(heat-api heat-small-api heat-engine heat-small-engine keystone)
cd "$H/run" 2>/dev/null || exit 0
stop() {  # stop NAME GRACE_SECONDS
  local pid
  [ -f "$1.pid" ] || return 0
  pid=$(cat "$1.pid")
  # start.sh ran each service as the leader of its own session: its group id is its pid
  if kill -0 "$pid" 2>/dev/null && [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ]; then
    [ "$2" -gt 0 ] && kill -TERM -- "-$pid" 2>/dev/null
    for _ in $(seq $(( $2 * 10 ))); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null && [ "$2" -gt 0 ] && echo "heat-harness: $1 ($pid) needed SIGKILL"
    for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    echo "heat-harness: stopped $1 ($pid)"
  fi
  rm -f "$1.pid"
}
grace() {  # grace NAME: seconds a service gets to stop on SIGTERM
  case $1 in *engine) echo 20 ;; *) echo 10 ;; esac
}
KILL=0
if [ "${1:-}" = "--kill" ]; then KILL=1; shift; fi
if [ $# -eq 0 ]; then set -- "${SERVICES[@]}"; fi
for name in "$@"; do
  if [[ ! " ${SERVICES[*]} " =~ " $name " ]]; then
    echo "heat-harness: no service $name (one of: ${SERVICES[*]})" >&2
    exit 2
  fi
  if [ "$KILL" = 1 ]; then stop "$name" 0; else stop "$name" "$(grace "$name")"; fi
done
exit 0
