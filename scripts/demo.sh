#!/usr/bin/env bash
# `make demo`: the whole product on this machine, with no external service.
#   - SQLite under var/demo/, kombu's filesystem broker under var/demo/broker/
#   - the local Customer.io stand-in on 127.0.0.1:8025 (the demo connection forwards to it)
#   - a real Celery worker and beat (the outbox sweep), their logs in var/demo/worker.log and beat.log
#   - the admin on http://127.0.0.1:8000/admin/
# It ends with a short block: the admin's address, the credentials and the stand-in's address.
# Ctrl-C stops everything it started.
# DEMO_PORT / DEMO_STANDIN_PORT choose other ports, DEMO_DIR another folder, VENV another virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."

ADMIN_PORT=${DEMO_PORT:-8000}
STANDIN_PORT=${DEMO_STANDIN_PORT:-8025}
DEMO=${DEMO_DIR:-var/demo}
VENV=${VENV:-.venv}
ADMIN_URL="http://127.0.0.1:$ADMIN_PORT/admin/"
STANDIN_URL="http://127.0.0.1:$STANDIN_PORT"

# Another demo (or anything else) on the demo's ports would answer in its place: the admin would
# be someone else's, and the demo connection would forward to a stand-in that rejects its key.
for port in "$ADMIN_PORT" "$STANDIN_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "make demo: 127.0.0.1:$port is already in use (an earlier demo still running?)." >&2
    echo "Stop what listens there first ('ss -ltnp sport = :$port' names it), or choose other ports:" >&2
    echo "  DEMO_PORT=8100 DEMO_STANDIN_PORT=8125 make demo" >&2
    exit 1
  fi
done
PY=$VENV/bin/python
mkdir -p "$DEMO"

# Secrets made once for this demo folder, kept out of the repository (var/ is ignored).
[ -f "$DEMO/encryption.key" ] || $PY -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' > "$DEMO/encryption.key"
[ -f "$DEMO/standin.key" ] || $PY -c 'import secrets; print("demo-" + secrets.token_urlsafe(16))' > "$DEMO/standin.key"
[ -f "$DEMO/standin-app.key" ] || $PY -c 'import secrets; print("demo-app-" + secrets.token_urlsafe(16))' > "$DEMO/standin-app.key"
chmod 600 "$DEMO"/*.key

DEMO_ABS=$(cd "$DEMO" && pwd)
export PYTHONUNBUFFERED=1  # the processes' lines appear in the order they happen
export DEBUG=1
export DATABASE_URL="sqlite:///$DEMO_ABS/db.sqlite3"
export CELERY_BROKER_URL="filesystem://"
export BROKER_DIR="$DEMO_ABS/broker"
export ENCRYPTION_KEYS="$(cat "$DEMO/encryption.key")"
export CUSTOMERIO_US_URL="$STANDIN_URL"
export CUSTOMERIO_EU_URL="$STANDIN_URL"
export CUSTOMERIO_APP_US_URL="$STANDIN_URL"
export CUSTOMERIO_APP_EU_URL="$STANDIN_URL"
export SITE_URL="http://127.0.0.1:$ADMIN_PORT"
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
$PY manage.py axes_reset >/dev/null 2>&1  # a new demo starts with no login locked out
loaded=$($PY manage.py load_demo --api-key-file "$DEMO/standin.key" --app-api-key-file "$DEMO/standin-app.key")
echo "$loaded"
credentials=$(echo "$loaded" | sed -n 's/^Superuser: \(.*\) \/ password: \(.*\)$/\1 \/ password: \2/p')

# The worker's and beat's banners and task lines go to files: the terminal keeps what a person needs.
: > "$DEMO/worker.log"
$PY manage.py cio_standin --port "$STANDIN_PORT" & pids+=($!)
"$VENV/bin/celery" -A cioaudience worker --pool threads --concurrency 2 --loglevel INFO -n demo@%h \
  >"$DEMO/worker.log" 2>&1 & pids+=($!)
"$VENV/bin/celery" -A cioaudience beat --loglevel INFO --schedule "$DEMO/celerybeat-schedule" \
  >"$DEMO/beat.log" 2>&1 & pids+=($!)
$PY manage.py runserver "127.0.0.1:$ADMIN_PORT" --noreload & pids+=($!)

# The block below is printed once the worker says it is ready and the admin answers (or after a minute).
for _ in $(seq 120); do
  if grep -q " ready\.$" "$DEMO/worker.log" && (exec 3<>"/dev/tcp/127.0.0.1/$ADMIN_PORT") 2>/dev/null; then
    break
  fi
  sleep 0.5
done
grep -q " ready\.$" "$DEMO/worker.log" || echo "make demo: the worker is not ready yet; see $DEMO/worker.log"

cat <<MSG

  cioaudience demo
  Admin:      $ADMIN_URL
  Log in as:  ${credentials:-see the "Superuser:" line above}
  Stand-in:   $STANDIN_URL/_standin/people?site_id=demo-site
              $STANDIN_URL/_standin/segments?site_id=demo-site (manual segments)
  Logs:       $DEMO/worker.log, $DEMO/beat.log (the Celery worker and beat)
  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
