#!/bin/bash
# The deploy node: fetch stacklab's Ansible, wait until the app and worker servers of the initial size have
# registered (their SoftwareDeployments in this server's Heat metadata), run the cluster playbook against
# the inventory (deploy/inventory: Nova metadata + registrations), signal Heat with the outcome, then
# install a timer that re-runs the playbook whenever the topology changes (scaling, by update or signal).
set -uo pipefail
exec > >(tee -a /var/log/stacklab-deploy.log) 2>&1
. /etc/stacklab-deploy/deploy.env
fail() { wc_notify --data-binary "{\"status\": \"FAILURE\", \"reason\": \"$1\"}"; exit 1; }

SRC=/opt/stacklab-src
git clone --quiet "$STACKLAB_GIT_URL" "$SRC" || fail "git clone $STACKLAB_GIT_URL failed"
git -C "$SRC" checkout --quiet "$STACKLAB_GIT_REF" || fail "no ref $STACKLAB_GIT_REF"
python3 -m venv /opt/ansible || fail "venv failed"
/opt/ansible/bin/pip install -q "ansible-core>=2.16,<2.20" || fail "pip install ansible-core failed"
/opt/ansible/bin/ansible-galaxy collection install -r "$SRC/deploy/ansible/requirements.yml" \
  || fail "ansible-galaxy failed"

cat > /usr/local/sbin/stacklab-converge <<'SCRIPT'
#!/bin/bash
# Re-run the cluster playbook when the topology in the metadata differs from the last one applied.
set -euo pipefail
SRC=/opt/stacklab-src
STAMP=/var/lib/stacklab-deploy/topology.sha256
mkdir -p /var/lib/stacklab-deploy
current=$(python3 "$SRC/deploy/inventory/stacklab_inventory.py" --list | sha256sum | cut -d' ' -f1)
if [ "${1:-}" != --force ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$current" ]; then exit 0; fi
cd "$SRC/deploy/ansible"
ANSIBLE_HOST_KEY_CHECKING=False /opt/ansible/bin/ansible-playbook \
  -i "$SRC/deploy/inventory/stacklab_inventory.py" cluster.yml \
  -e stacklab_secret_seed="$(. /etc/stacklab-deploy/deploy.env; echo "$STACKLAB_SECRET_SEED")"
echo "$current" > "$STAMP"
SCRIPT
chmod 0755 /usr/local/sbin/stacklab-converge

# the members register once they signalled ready; wait for the counts the stack was created with
INVENTORY="$SRC/deploy/inventory/stacklab_inventory.py"
for _ in $(seq 180); do
  if python3 "$INVENTORY" --list | python3 -c '
import json, sys
inv = json.load(sys.stdin)
want = inv["all"]["vars"]
ok = all(len(inv[g]["hosts"]) >= int(want.get(f"stacklab_{r}_expected", 0))
         for g, r in (("app_servers", "app"), ("worker_servers", "worker")))
sys.exit(0 if ok else 1)'; then break; fi
  sleep 10
done

/usr/local/sbin/stacklab-converge --force || fail "the cluster playbook failed (see /var/log/stacklab-deploy.log)"

cat > /etc/systemd/system/stacklab-converge.service <<'UNIT'
[Unit]
Description=Re-run the stacklab cluster playbook when the topology changed
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/stacklab-converge
UNIT
cat > /etc/systemd/system/stacklab-converge.timer <<'UNIT'
[Unit]
Description=Check the stacklab topology every two minutes
[Timer]
OnBootSec=2min
OnUnitActiveSec=2min
[Install]
WantedBy=timers.target
UNIT
systemctl daemon-reload
systemctl enable --now stacklab-converge.timer
wc_notify --data-binary '{"status": "SUCCESS", "reason": "cluster playbook applied"}'
