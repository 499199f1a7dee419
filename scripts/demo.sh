#!/usr/bin/env bash
# `make demo`: the whole product on this machine, with no external service.
#   - SQLite under var/demo/, kombu's filesystem broker under var/demo/broker/
#   - the local Customer.io stand-in on 127.0.0.1:8025 (the demo connection forwards to it)
#   - a real Celery worker and beat (the outbox sweep)
#   - the admin on http://127.0.0.1:8000/admin/
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

# Another demo (or anything else) on the demo's ports would answer in its place: the admin would
# be someone else's, and the demo connection would forward to a stand-in that rejects its key.
for port in 8000 8025; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "make demo: 127.0.0.1:$port is already in use (an earlier demo still running?)." >&2
    echo "Stop what listens there first; 'ss -ltnp sport = :$port' names it." >&2
    exit 1
  fi
done
PY=.venv/bin/python
DEMO=var/demo
mkdir -p "$DEMO"

# Secrets made once for this demo folder, kept out of the repository (var/ is ignored).
[ -f "$DEMO/encryption.key" ] || $PY -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' > "$DEMO/encryption.key"
[ -f "$DEMO/standin.key" ] || $PY -c 'import secrets; print("demo-" + secrets.token_urlsafe(16))' > "$DEMO/standin.key"
[ -f "$DEMO/standin-app.key" ] || $PY -c 'import secrets; print("demo-app-" + secrets.token_urlsafe(16))' > "$DEMO/standin-app.key"
chmod 600 "$DEMO"/*.key

export DEBUG=1
export DATABASE_URL="sqlite:///$PWD/$DEMO/db.sqlite3"
export CELERY_BROKER_URL="filesystem://"
export BROKER_DIR="$PWD/$DEMO/broker"
export ENCRYPTION_KEYS="$(cat "$DEMO/encryption.key")"
export CUSTOMERIO_US_URL="http://127.0.0.1:8025"
export CUSTOMERIO_EU_URL="http://127.0.0.1:8025"
export CUSTOMERIO_APP_US_URL="http://127.0.0.1:8025"
export CUSTOMERIO_APP_EU_URL="http://127.0.0.1:8025"
export SWEEP_INTERVAL_SECONDS=10
export CIO_STANDIN_WORKSPACES="demo-site:$(cat "$DEMO/standin.key"):us::$(cat "$DEMO/standin-app.key")"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "Stopping the demo..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

$PY manage.py migrate -v0
$PY manage.py load_demo --api-key-file "$DEMO/standin.key" --app-api-key-file "$DEMO/standin-app.key"

$PY manage.py cio_standin --port 8025 & pids+=($!)
.venv/bin/celery -A cioaudience worker --pool threads --concurrency 2 --loglevel INFO -n demo@%h & pids+=($!)
.venv/bin/celery -A cioaudience beat --loglevel INFO --schedule "$DEMO/celerybeat-schedule" & pids+=($!)
$PY manage.py runserver 127.0.0.1:8000 --noreload & pids+=($!)

cat <<MSG

  cioaudience demo
  Admin:      http://127.0.0.1:8000/admin/   (credentials printed above)
  Stand-in:   http://127.0.0.1:8025/_standin/people?site_id=demo-site
              http://127.0.0.1:8025/_standin/segments?site_id=demo-site (manual segments)
  Worker:     CELERY_BROKER_URL=filesystem:// BROKER_DIR=$PWD/$DEMO/broker .venv/bin/celery -A cioaudience inspect ping
  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
