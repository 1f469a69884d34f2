#!/usr/bin/env bash
# End-to-end processing rate of the embedded (SQLite) deployment, through the real queue:
#   1. `faultline web` accepts a load from `ingest-load` into queue.db (nothing processed yet);
#   2. `faultline worker` starts on that backlog; the script times how long it takes until
#      every accepted event is grouped and stored in faultline.db.
# What it reports is events fully processed per second: queue fetch + lock + pipeline +
# store + ack, i.e. everything after the HTTP request.
#
#   cargo build --release --workspace --bins
#   tests/bench/queue-drain.sh [seconds of load, default 6] [connections, default 64] [ingest-load options]
# The generator's gzip bodies are built in advance and repeat once it has sent them all, and
# repeats are stored once: `--gzip-percent 0` makes every event distinct (fresh ids), which
# is the honest figure for the pipeline.
# BIN (default target/release, or $CARGO_TARGET_DIR/release) holds the binaries.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
SECONDS_OF_LOAD=${1:-6}
CONNECTIONS=${2:-64}
shift $(( $# < 2 ? $# : 2 ))
command -v sqlite3 >/dev/null || { echo "queue-drain needs the sqlite3 command" >&2; exit 1; }

DIR=$(mktemp -d /tmp/faultline-drain.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export FAULTLINE_DATA_DIR=$DIR FAULTLINE_BIND=127.0.0.1:$PORT FAULTLINE_LOG=${FAULTLINE_LOG:-warn}
unset DATABASE_URL REDIS_URL
cleanup() { kill "${WEB:-}" "${WORKER:-}" 2>/dev/null || true; cp "$DIR/worker.log" /tmp/worker.log; rm -rf "$DIR"; }
trap cleanup EXIT

"$BIN/faultline" org create bench >/dev/null
DSN=$("$BIN/faultline" project create --org bench load)

"$BIN/faultline" web >"$DIR/web.log" 2>&1 &
WEB=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
"$BIN/ingest-load" --dsn "$DSN" --duration "$SECONDS_OF_LOAD" --connections "$CONNECTIONS" "$@"
kill -TERM "$WEB"; wait "$WEB" || true; WEB=

queued=$(sqlite3 "$DIR/queue.db" "SELECT COUNT(*) FROM queue_jobs")
echo "backlog: $queued jobs in queue.db; starting the worker"
start=$(date +%s.%N)
"$BIN/faultline" worker >"$DIR/worker.log" 2>&1 &
WORKER=$!
# Done when every job has been acknowledged, i.e. its event committed (a job leaves the
# queue only after that). Counting events would not do: the load generator repeats a few
# event ids, and repeats are stored once.
left=$queued
deadline=$(( $(date +%s) + 600 ))
while [ "$left" -gt 0 ]; do
  sleep 0.2
  left=$(sqlite3 "$DIR/queue.db" "PRAGMA busy_timeout=2000; SELECT COUNT(*) FROM queue_jobs" 2>/dev/null | tail -n1 || echo "$left")
  left=${left:-$queued}
  if [ "$(date +%s)" -gt "$deadline" ]; then echo "worker did not drain within 10 min ($left of $queued left)" >&2; exit 1; fi
  kill -0 "$WORKER" 2>/dev/null || { echo "worker exited" >&2; cat "$DIR/worker.log" >&2; exit 1; }
done
end=$(date +%s.%N)
issues=$(sqlite3 "$DIR/faultline.db" "SELECT COUNT(*) FROM issues")
stored=$(sqlite3 "$DIR/faultline.db" "SELECT COUNT(*) FROM events")
dead=$(sqlite3 "$DIR/queue.db" "SELECT COUNT(*) FROM queue_dead")
python3 - "$queued" "$start" "$end" "$issues" "$stored" "$dead" <<'EOF'
import sys
n, start, end, issues, stored, dead = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
secs = end - start
print(f"drained {n} jobs ({stored} distinct events, {issues} issues, {dead} dead) in {secs:.2f} s (worker start included): {n / secs:,.0f} events/s")
EOF
