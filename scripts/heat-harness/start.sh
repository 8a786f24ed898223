#!/usr/bin/env bash
# Start a real Keystone + Heat on loopback for stacklab's openstack tests (idempotent, fast when warm).
#
# Installs Keystone and Heat from PyPI into $STACKLAB_HEAT_HOME/venv (default /var/lib/stacklab-heat), uses
# the MariaDB on 127.0.0.1:3306 (root, no password) and the RabbitMQ on 127.0.0.1:5672 (vhosts of its own),
# and runs keystone (:5000), heat-api + heat-engine (:8004) and a second Heat whose projects may hold one
# stack each (:8005, region RegionSmall). Writes $STACKLAB_HEAT_HOME/etc/clouds.yaml. Every process it
# starts is recorded in run/*.pid; stop.sh stops exactly those. STACKLAB_HEAT_FRESH=1 starts from empty
# databases. Prints per-step timings.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
H=${STACKLAB_HEAT_HOME:-/var/lib/stacklab-heat}
KS_PORT=${STACKLAB_HEAT_KEYSTONE_PORT:-5000}
HEAT_PORT=${STACKLAB_HEAT_API_PORT:-8004}
SMALL_PORT=${STACKLAB_HEAT_SMALL_API_PORT:-8005}
MYSQL="mariadb -h127.0.0.1 -P3306 -uroot"
RMQ_USER=stacklab_heat
RMQ_PASS=stacklab-heat-rmq
DB_PASS=stacklab-heat-db
export PYTHONWARNINGS=ignore

mkdir -p "$H"/{etc,log,run/locks,data,wsgi}
cd "$H"
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
wait_until() {  # wait_until SECONDS WHAT CMD...
  local end=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then echo "heat-harness: timed out waiting for $what" >&2; return 1; fi
    sleep 0.2
  done
}
running() { [ -f "run/$1.pid" ] && kill -0 "$(cat "run/$1.pid")" 2>/dev/null; }
port_taken() { ss -ltnH "sport = :$1" | grep -q .; }
launch() {  # launch NAME CMD... : own session (stop.sh signals the whole group), pid recorded
  local name=$1; shift
  if running "$name"; then return 0; fi
  setsid "$@" >"log/$name.out" 2>&1 < /dev/null &
  echo $! > "run/$name.pid"
}
T0=$(now)

# ------------------------------------------------------------------ install (once)
if [ ! -x venv/bin/heat-engine ] || [ ! -x venv/bin/keystone-manage ]; then
  T=$(now)
  rm -rf venv
  python3 -m venv venv
  venv/bin/pip install -q --upgrade pip >log/pip.log 2>&1
  venv/bin/pip install -q -c "$HERE/constraints.txt" keystone openstack-heat openstacksdk gunicorn PyMySQL \
    >>log/pip.log 2>&1
  echo "heat-harness: installed keystone + heat into $H/venv in $(took "$T")"
fi
PY=$H/venv/bin/python

# ------------------------------------------------------------------ databases and broker vhosts (once)
if [ "${STACKLAB_HEAT_FRESH:-0}" = 1 ]; then
  "$HERE/stop.sh" >/dev/null || true
  for db in stacklab_keystone stacklab_heat stacklab_heat_small; do $MYSQL -e "DROP DATABASE IF EXISTS $db"; done
  for vh in stacklab-heat stacklab-heat-small; do rabbitmqctl -q delete_vhost "$vh" >/dev/null 2>&1 || true; done
  rm -rf data/* log/*.log
fi
T=$(now)
if [ ! -f data/infra.ready ]; then
$MYSQL <<SQL
CREATE DATABASE IF NOT EXISTS stacklab_keystone CHARACTER SET utf8;
CREATE DATABASE IF NOT EXISTS stacklab_heat CHARACTER SET utf8;
CREATE DATABASE IF NOT EXISTS stacklab_heat_small CHARACTER SET utf8;
CREATE USER IF NOT EXISTS 'stacklab_heat'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON stacklab_keystone.* TO 'stacklab_heat'@'127.0.0.1';
GRANT ALL PRIVILEGES ON stacklab_heat.* TO 'stacklab_heat'@'127.0.0.1';
GRANT ALL PRIVILEGES ON stacklab_heat_small.* TO 'stacklab_heat'@'127.0.0.1';
SQL
if ! rabbitmqctl -q list_users | awk '{print $1}' | grep -qx "$RMQ_USER"; then
  rabbitmqctl -q add_user "$RMQ_USER" "$RMQ_PASS" >/dev/null
fi
for vh in stacklab-heat stacklab-heat-small; do
  rabbitmqctl -q list_vhosts | grep -qx "$vh" || rabbitmqctl -q add_vhost "$vh" >/dev/null
  rabbitmqctl -q set_permissions -p "$vh" "$RMQ_USER" '.*' '.*' '.*' >/dev/null
done
touch data/infra.ready
echo "heat-harness: databases + vhosts $(took "$T")"
fi

# ------------------------------------------------------------------ configuration
DBURL="mysql+pymysql://stacklab_heat:$DB_PASS@127.0.0.1:3306"
cat > etc/keystone.conf <<CONF
[DEFAULT]
log_file = $H/log/keystone.log
use_stderr = false
[database]
connection = $DBURL/stacklab_keystone?charset=utf8
[identity]
password_hash_rounds = 4
[token]
provider = fernet
[fernet_tokens]
key_repository = $H/data/fernet-keys
[fernet_receipts]
key_repository = $H/data/fernet-keys
[credential]
key_repository = $H/data/credential-keys
CONF

heat_conf() {  # heat_conf FILE DB VHOST MAX_STACKS
  cat > "$1" <<CONF
[DEFAULT]
use_stderr = false
transport_url = rabbit://$RMQ_USER:$RMQ_PASS@127.0.0.1:5672/$3
num_engine_workers = ${STACKLAB_HEAT_ENGINE_WORKERS:-1}
max_stacks_per_tenant = $4
stack_domain_admin = heat_domain_admin
stack_domain_admin_password = heatdomainpass
stack_user_domain_name = heat
region_name_for_services = RegionOne
heat_metadata_server_url = http://127.0.0.1:$HEAT_PORT
heat_waitcondition_server_url = http://127.0.0.1:$HEAT_PORT/v1/waitcondition
[database]
connection = $DBURL/$2?charset=utf8
[oslo_concurrency]
lock_path = $H/run/locks
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:$KS_PORT
auth_url = http://127.0.0.1:$KS_PORT
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = heat
password = heatpass
service_token_roles_required = true
[trustee]
auth_type = password
auth_url = http://127.0.0.1:$KS_PORT
username = heat
password = heatpass
user_domain_name = Default
[clients_keystone]
auth_uri = http://127.0.0.1:$KS_PORT
[paste_deploy]
api_paste_config = $H/venv/etc/heat/api-paste.ini
CONF
}
heat_conf etc/heat.conf stacklab_heat stacklab-heat 1000
heat_conf etc/heat-small.conf stacklab_heat_small stacklab-heat-small 1

cat > wsgi/keystone_wsgi.py <<PYEOF
import os
import sys

os.environ["OS_KEYSTONE_CONFIG_DIR"] = "$H/etc"
sys.argv = sys.argv[:1]  # oslo.config would read gunicorn's arguments
from keystone.server.wsgi import initialize_public_application  # noqa: E402

application = initialize_public_application()
PYEOF
for which in heat heat-small; do
  cat > "wsgi/${which//-/_}_api_wsgi.py" <<PYEOF
import sys

sys.argv = ["heat-api", "--config-file", "$H/etc/$which.conf", "--log-file", "$H/log/$which-api.log"]
from heat.api.openstack.wsgi import init_application  # noqa: E402

application = init_application()
PYEOF
done

B=$H/venv/bin
cat > etc/clouds.yaml <<YAML
# Generated by scripts/heat-harness/start.sh: the clouds of the local Keystone + Heat.
clouds:
  heatbox:
    region_name: RegionOne
    auth: &demo
      auth_url: http://127.0.0.1:$KS_PORT/v3
      username: demo
      password: demopass
      project_name: demo
      user_domain_name: Default
      project_domain_name: Default
  heatbox-badpass:
    region_name: RegionOne
    auth:
      <<: *demo
      password: not-the-password
  heatbox-small:
    region_name: RegionSmall
    auth:
      <<: *demo
      username: small
      password: smallpass
      project_name: small
  heatbox-down:
    region_name: RegionOne
    auth:
      <<: *demo
      auth_url: http://127.0.0.1:9/v3
  heatbox-admin:
    region_name: RegionOne
    auth:
      <<: *demo
      username: admin
      password: secret
      project_name: admin
YAML

# ------------------------------------------------------------------ keystone
T=$(now)
KM="$B/keystone-manage --config-file $H/etc/keystone.conf"
if [ ! -f data/keystone.ready ]; then
  $KM db_sync >log/keystone-manage.log 2>&1
  [ -d data/fernet-keys ] || $KM fernet_setup --keystone-user root --keystone-group root >>log/keystone-manage.log 2>&1
  [ -d data/credential-keys ] || $KM credential_setup --keystone-user root --keystone-group root \
    >>log/keystone-manage.log 2>&1
  $KM bootstrap --bootstrap-password secret --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "http://127.0.0.1:$KS_PORT/v3" --bootstrap-public-url "http://127.0.0.1:$KS_PORT/v3" \
    --bootstrap-internal-url "http://127.0.0.1:$KS_PORT/v3" >>log/keystone-manage.log 2>&1
  echo "heat-harness: keystone db_sync + bootstrap $(took "$T")"
fi
if ! running keystone; then
  if port_taken "$KS_PORT"; then echo "heat-harness: 127.0.0.1:$KS_PORT is taken" >&2; exit 1; fi
  # process workers, not threads (keystone mixes request contexts under threads)
  launch keystone "$B/gunicorn" --chdir "$H/wsgi" -b "127.0.0.1:$KS_PORT" -w 3 --timeout 120 \
    --graceful-timeout 5 --access-logfile "$H/log/keystone-access.log" keystone_wsgi:application
fi
wait_until 60 keystone curl -sf "http://127.0.0.1:$KS_PORT/v3"
if [ ! -f data/keystone.ready ]; then
  T=$(now)
  STACKLAB_HEAT_KEYSTONE="http://127.0.0.1:$KS_PORT/v3" STACKLAB_HEAT_API="http://127.0.0.1:$HEAT_PORT" \
    STACKLAB_HEAT_SMALL_API="http://127.0.0.1:$SMALL_PORT" "$PY" "$HERE/bootstrap_identity.py"
  touch data/keystone.ready
  echo "heat-harness: identity objects $(took "$T")"
fi

# ------------------------------------------------------------------ heat (main and small)
for which in heat heat-small; do
  if [ ! -f "data/$which.ready" ]; then
    T=$(now)
    "$B/heat-manage" --config-file "etc/$which.conf" db_sync >"log/$which-manage.log" 2>&1
    touch "data/$which.ready"
    echo "heat-harness: $which db_sync $(took "$T")"
  fi
done
T=$(now)
start_heat() {  # start_heat NAME PORT
  launch "$1-engine" "$B/heat-engine" --config-file "$H/etc/$1.conf" --log-file "$H/log/$1-engine.log"
  if ! running "$1-api"; then
    if port_taken "$2"; then echo "heat-harness: 127.0.0.1:$2 is taken" >&2; exit 1; fi
    launch "$1-api" "$B/gunicorn" --chdir "$H/wsgi" -b "127.0.0.1:$2" -w "${STACKLAB_HEAT_API_WORKERS:-2}" --timeout 120 --graceful-timeout 5 \
      --access-logfile "$H/log/$1-api-access.log" "${1//-/_}_api_wsgi:application"
  fi
}
start_heat heat "$HEAT_PORT"
start_heat heat-small "$SMALL_PORT"
engine_listens() {  # an RPC sent before the engine consumes its queue is lost (60 s hang): wait for it
  rabbitmqctl -q list_queues -p "$1" name consumers 2>/dev/null | awk '$1 == "engine" && $2 > 0 {ok = 1} END {exit !ok}'
}
wait_until 90 heat-api curl -sf "http://127.0.0.1:$HEAT_PORT/"
wait_until 90 heat-small-api curl -sf "http://127.0.0.1:$SMALL_PORT/"
wait_until 120 heat-engine engine_listens stacklab-heat
wait_until 120 heat-small-engine engine_listens stacklab-heat-small
export OS_CLIENT_CONFIG_FILE=$H/etc/clouds.yaml
wait_until 120 "heat to answer" "$PY" "$HERE/wait_ready.py" heatbox heatbox-small
echo "heat-harness: heat ready $(took "$T"); all ready in $(took "$T0")"
echo "export OS_CLIENT_CONFIG_FILE=$H/etc/clouds.yaml"
