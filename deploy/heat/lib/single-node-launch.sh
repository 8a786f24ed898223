#!/bin/bash
# Install Docker and Tutor, launch Open edX, then tell Heat (wc_notify is replaced by the handle's curl).
set -uo pipefail
exec > >(tee -a /var/log/stacklab-launch.log) 2>&1
fail() { wc_notify --data-binary "{\"status\": \"FAILURE\", \"reason\": \"$1\"}"; exit 1; }
. /etc/stacklab/tutor.env

curl -fsSL https://get.docker.com | sh || fail "docker install failed"
systemctl enable --now docker || fail "docker did not start"

python3 -m venv /opt/tutor || fail "venv failed"
/opt/tutor/bin/pip install -q "tutor[full]${TUTOR_VERSION}" || fail "pip install tutor failed"
if [ -n "$STACKLAB_PLUGIN" ]; then
  /opt/tutor/bin/pip install -q "$STACKLAB_PLUGIN" || fail "pip install $STACKLAB_PLUGIN failed"
fi
ln -sf /opt/tutor/bin/tutor /usr/local/bin/tutor
export TUTOR_ROOT=/opt/tutor-root
echo "TUTOR_ROOT=$TUTOR_ROOT" >> /etc/environment

tutor config save --set LMS_HOST="$LMS_HOST" --set CMS_HOST="studio.$LMS_HOST" --set ENABLE_HTTPS=false \
  || fail "tutor config save failed"
if [ -n "$STACKLAB_PLUGIN" ]; then
  tutor plugins enable stacklab || fail "tutor plugins enable stacklab failed"
fi
tutor local launch --non-interactive || fail "tutor local launch failed"
curl -fsS -o /dev/null -H "Host: $LMS_HOST" http://127.0.0.1/heartbeat || fail "the LMS does not answer"
wc_notify --data-binary '{"status": "SUCCESS", "reason": "Open edX launched"}'
