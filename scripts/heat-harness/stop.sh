#!/usr/bin/env bash
# Stop exactly what start.sh started: the process groups recorded in $STACKLAB_HEAT_HOME/run/*.pid.
H=${STACKLAB_HEAT_HOME:-/var/lib/stacklab-heat}
cd "$H/run" 2>/dev/null || exit 0
stop() {  # stop NAME GRACE_SECONDS
  local pid
  [ -f "$1.pid" ] || return 0
  pid=$(cat "$1.pid")
  # start.sh ran each service as the leader of its own session: its group id is its pid
  if kill -0 "$pid" 2>/dev/null && [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ]; then
    kill -TERM -- "-$pid" 2>/dev/null
    for _ in $(seq $(( $2 * 10 ))); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null && echo "heat-harness: $1 ($pid) needed SIGKILL"
    echo "heat-harness: stopped $1 ($pid)"
  fi
  rm -f "$1.pid"
}
stop heat-api 10
stop heat-small-api 10
stop heat-engine 20
stop heat-small-engine 20
stop keystone 10
exit 0
