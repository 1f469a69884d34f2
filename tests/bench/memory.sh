#!/usr/bin/env bash
# Memory of `faultline serve` (web + worker in one process) at default settings, under an
# overload, measured from outside (issue 25):
#   1. idle RSS a few seconds after start;
#   2. peak RSS (VmRSS of /proc/<pid>/status every 100 ms) while `wrk` offers distinct
#      ~10 KB envelopes over 1,000 issues as fast as 128 connections can for 60 s;
#   3. RSS when the backlog has drained, and again 10 s later (memory given back);
#   4. whether every acknowledged (200) event was stored: distinct event ids, so
#      stored events >= 200s, and stored <= 200s + requests whose answer was lost (timeouts).
# Loopback only, a fresh data directory, stops by itself (the drain is bounded to 15 min).
#
#   cargo build --release -p faultline-app
#   tests/bench/memory.sh [seconds of load, default 60] [connections, default 128]
#   CGROUP_LIMIT=256M tests/bench/memory.sh     # the same inside a memory cgroup (v1 or v2)
#   DRAIN_MAX=120 tests/bench/memory.sh         # give up waiting for the drain after 120 s
# BIN (default target/release, or $CARGO_TARGET_DIR/release) holds the binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
SECONDS_OF_LOAD=${1:-60}
CONNECTIONS=${2:-128}
THREADS=${THREADS:-2}
for tool in wrk sqlite3 curl python3; do
  command -v "$tool" >/dev/null || { echo "memory.sh needs $tool (apt-get install -y $tool)" >&2; exit 1; }
done

DIR=$(mktemp -d /tmp/faultline-memory.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export FAULTLINE_DATA_DIR=$DIR FAULTLINE_BIND=127.0.0.1:$PORT FAULTLINE_LOG=${FAULTLINE_LOG:-warn}
unset DATABASE_URL REDIS_URL
CG=
cleanup() {
  [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null || true
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  [ -n "$CG" ] && rmdir "$CG" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { python3 -c "print(f'{int($1)/1024:.0f}')"; }

# A memory cgroup for the server, if asked for: v2 (memory.max) or v1 (limit_in_bytes),
# created under this shell's own cgroup.
if [ -n "${CGROUP_LIMIT:-}" ]; then
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    CG=/sys/fs/cgroup$(awk -F: '$1=="0" {print $3}' /proc/self/cgroup)/faultline-memory-$$
    mkdir "$CG" && echo "$CGROUP_LIMIT" >"$CG/memory.max" && echo 0 >"$CG/memory.swap.max" 2>/dev/null || true
  else
    CG=/sys/fs/cgroup/memory$(awk -F: '$2=="memory" {print $3}' /proc/self/cgroup)/faultline-memory-$$
    mkdir "$CG" && echo "$CGROUP_LIMIT" >"$CG/memory.limit_in_bytes"
  fi
  [ -d "$CG" ] || { echo "cannot create a memory cgroup (is the cgroup file system writable?)" >&2; exit 1; }
  echo "cgroup $CG, limit $CGROUP_LIMIT"
fi

"$BIN/faultline" org create bench >/dev/null
DSN=$("$BIN/faultline" project create --org bench load)
KEY=$(python3 -c "import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).username)" "$DSN")
PROJECT=${DSN##*/}

if [ -n "$CG" ]; then
  sh -c 'echo $$ > "$1/cgroup.procs" && exec "$2" serve' sh "$CG" "$BIN/faultline" >"$DIR/serve.log" 2>&1 &
else
  "$BIN/faultline" serve >"$DIR/serve.log" 2>&1 &
fi
SERVER=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
sleep 5
IDLE=$(rss_kib "$SERVER")
echo "idle after start: $(mib "$IDLE") MiB"

(while kill -0 "$SERVER" 2>/dev/null; do
  echo "$(date +%s.%N) $(rss_kib "$SERVER")"; sleep 0.1
done) >"$DIR/rss.log" &
SAMPLER=$!

KEY=$KEY PROJECT=$PROJECT ISSUES=${ISSUES:-1000} wrk -t "$THREADS" -c "$CONNECTIONS" \
  -d "${SECONDS_OF_LOAD}s" --timeout 30s -s tests/bench/memory.lua "http://127.0.0.1:$PORT" \
  | tee "$DIR/wrk.out"
LOAD_END=$(date +%s.%N)
LOAD_PEAK=$(awk '{ if ($2 > m) m = $2 } END { print m + 0 }' "$DIR/rss.log")
queued=$(sqlite3 "$DIR/queue.db" "PRAGMA busy_timeout=5000; SELECT COUNT(*) FROM queue_jobs" | tail -n1)
echo "load over: peak $(mib "$LOAD_PEAK") MiB; backlog $queued jobs; draining"

left=$queued
deadline=$(( $(date +%s) + ${DRAIN_MAX:-900} ))
while [ "${left:-1}" -gt 0 ]; do
  sleep 0.5
  kill -0 "$SERVER" 2>/dev/null || { echo "the server died (OOM kill?)" >&2; tail -n 20 "$DIR/serve.log" >&2; break; }
  left=$(sqlite3 "$DIR/queue.db" "PRAGMA busy_timeout=5000; SELECT COUNT(*) FROM queue_jobs" 2>/dev/null | tail -n1 || echo "$left")
  if [ "$(date +%s)" -gt "$deadline" ]; then echo "not drained within ${DRAIN_MAX:-900} s ($left left)" >&2; break; fi
done
DRAIN_END=$(date +%s.%N)
DRAINED=$(rss_kib "$SERVER")
sleep 10
SETTLED=$(rss_kib "$SERVER")
PEAK=$(awk '{ if ($2 > m) m = $2 } END { print m + 0 }' "$DIR/rss.log")
kill "$SAMPLER" 2>/dev/null || true; SAMPLER=

stored=$(sqlite3 "$DIR/faultline.db" "PRAGMA busy_timeout=5000; SELECT COUNT(*) FROM events" | tail -n1)
dead=$(sqlite3 "$DIR/queue.db" "PRAGMA busy_timeout=5000; SELECT COUNT(*) FROM queue_dead" | tail -n1)
acked=$(awk '/^STATUS_200/ {print $2}' "$DIR/wrk.out")
limited=$(awk '/^STATUS_429/ {print $2}' "$DIR/wrk.out")
lost=$(awk '/^SOCKET_ERRORS/ {print $2}' "$DIR/wrk.out")
alive=yes; kill -0 "$SERVER" 2>/dev/null || alive=no

echo "---"
echo "idle after start:        $(mib "$IDLE") MiB"
echo "peak during the load:    $(mib "$LOAD_PEAK") MiB"
echo "peak overall:            $(mib "$PEAK") MiB"
echo "when drained:            $(mib "$DRAINED") MiB ($(python3 -c "print(f'{$DRAIN_END - $LOAD_END:.1f}')") s after the load)"
echo "10 s after the drain:    $(mib "$SETTLED") MiB"
echo "acknowledged (200):      $acked; refused 429: $limited; no answer: $lost"
echo "stored events:           $stored; dead jobs: $dead; server alive: $alive"
issues=$(sqlite3 "$DIR/faultline.db" "PRAGMA busy_timeout=5000; SELECT COUNT(*) FROM issues" | tail -n1)
echo "issues:                  $issues"
# wrk does not count the requests still open when its time is up (at most one per
# connection): their events may be stored without a 200 having been seen.
python3 - "$acked" "$stored" "$(( lost + CONNECTIONS ))" "$SECONDS_OF_LOAD" "$LOAD_END" "$DRAIN_END" "${left:-0}" <<'EOF'
import sys
acked, stored, lost, secs = (int(x) for x in sys.argv[1:5])
load_end, drain_end, left = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
print(f"accepted {acked / secs:,.0f} events/s; processed {stored / (secs + drain_end - load_end):,.0f} events/s end to end")
if left > 0:
    print(f"every acknowledged event stored: not drained ({left} jobs left), cannot tell")
else:
    ok = acked <= stored <= acked + lost
    print("every acknowledged event stored:", "yes" if ok else "NO")
EOF
if [ -n "$CG" ]; then
  if [ -f "$CG/memory.events" ]; then
    echo "cgroup: $(tr '\n' ' ' <"$CG/memory.events"); peak $(cat "$CG/memory.peak" 2>/dev/null || echo ?)"
  else
    echo "cgroup: $(grep oom_kill "$CG/memory.oom_control" | tr '\n' ' ')failcnt $(cat "$CG/memory.failcnt"); max usage $(mib $(( $(cat "$CG/memory.max_usage_in_bytes") / 1024 ))) MiB (page cache included)"
  fi
fi
