#!/bin/bash
# Runs after the cloud-config part: the node is reachable over SSH with python3; tell Heat (wc_notify is
# replaced by the wait condition handle's curl command).
set -u
for _ in $(seq 60); do
  if command -v python3 >/dev/null && systemctl is-active --quiet ssh; then
    wc_notify --data-binary '{"status": "SUCCESS", "reason": "node ready"}'
    exit 0
  fi
  sleep 5
done
wc_notify --data-binary '{"status": "FAILURE", "reason": "python3 or sshd missing after 5 minutes"}'
exit 1
