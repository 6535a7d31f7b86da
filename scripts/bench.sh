#!/usr/bin/env bash
# bench.sh — the whole gateway under load beside two bare moov-io/iso8583
# baselines measured in the same run (a single hop: client → echo issuer; and
# a relay: client → relay → echo issuer, each its own process), with the CPU
# per operation of every process, then the micro-benchmarks; writes
# BENCHMARKS.md (scripts/benchreport renders it from the raw results).
#
#   ./scripts/bench.sh                 (make bench) about 15 minutes
#   BENCH_QUICK=1 ./scripts/bench.sh   every measurement once, briefly (~4 min):
#                                      checks the script end to end; figures not for publishing
#
# Environment (defaults in brackets):
#   BENCH_QUICK      1: runs 1, duration 2s, warm-up 0.5s, soak 15s, micro-benchmarks once [0]
#   BENCH_RUNS       runs of each end-to-end measurement; medians are reported [3]
#   BENCH_DURATION   measured time of one run, after the warm-up [10s]
#   BENCH_WARMUP     warm-up of each run, not measured [1s]
#   BENCH_CONC       load concurrency, connections per acquirer × in flight [4x8]
#   BENCH_SOAK       the memory soak (closed loop at peak) [2m]; BENCH_SOAK=10m for the full one
#   BENCH_MICRO      0 skips the micro-benchmarks [1]
#   BENCH_RANGES     filler BIN ranges added to the 3 real ones, one gateway per value [7 100000 1000000]
#   BENCH_DUP_WINDOW the gateway's duplicate window [1m] (see below)
#   BENCH_HSM        0 skips the payShield module's gateway runs [1]
#   BENCH_HSM_CONNS  connections per HSM of that gateway [4]
#   BENCH_OUT        report file [BENCHMARKS.md]
#
# What runs, all on this machine and sharing its cores: Redis and a
# single-node Kafka broker (scripts/services.sh), the issuer simulator as its
# own process (`pingate-dev issuer-sim`; the gateway's in-process simulator when
# that command is missing), the gateway (`pingate serve --redis --kafka`), the
# baseline echo server (`pingate-dev bench-baseline --listen`), the bare relay
# in front of it (`pingate-dev bench-baseline --listen --relay`), and the load
# clients (`pingate-dev load`, `pingate-dev bench-baseline`). Every gateway run uses
# cards no earlier run touched (--card-offset), so each knows every PIN.
#
# CPU per operation: every load and baseline run is given the pids of the
# processes it exercises (--cpu NAME=PID,…) and reports, from /proc/PID/stat
# over its measured time, each one's user + system CPU divided by the answered
# requests (the load client's own too); benchreport takes the medians over
# the peak runs.
#
# Limits: the gateway runs on a config written here that raises the acquirer
# (1e6/s) and card (1e6 operations a day) limits and keeps the terminal
# limit's shape at 1000/s: the load tool stands for a whole ATM network and
# spreads its requests over 10000 terminal ids.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

QUICK="${BENCH_QUICK:-0}"
if [ "$QUICK" = 1 ]; then
  RUNS="${BENCH_RUNS:-1}"
  DUR="${BENCH_DURATION:-2s}"
  WARMUP="${BENCH_WARMUP:-0.5s}"
  SOAK="${BENCH_SOAK:-15s}"
  MICRO_COUNT=1
  MICRO_TIME=0.05s
  SOAK_EVERY=1
else
  RUNS="${BENCH_RUNS:-3}"
  DUR="${BENCH_DURATION:-10s}"
  WARMUP="${BENCH_WARMUP:-1s}"
  SOAK="${BENCH_SOAK:-2m}"
  MICRO_COUNT=5
  MICRO_TIME=""
  SOAK_EVERY=5
fi
CONC="${BENCH_CONC:-4x8}"
MICRO="${BENCH_MICRO:-1}"
RANGES="${BENCH_RANGES:-7 100000 1000000}"
# The gateway remembers every request's outcome for the duplicate window
# (default 10 min) to answer a retransmission; its memory grows with rate ×
# window and is flat only once the window is full. The bench uses 1 min so that
# the soak shows the plateau; BENCH_DUP_WINDOW=10m for the default.
DUP_WINDOW="${BENCH_DUP_WINDOW:-1m}"
OUT="${BENCH_OUT:-BENCHMARKS.md}"
HSM="${BENCH_HSM:-1}"
HSM_CONNS="${BENCH_HSM_CONNS:-4}"
PER_BIN=2500000 # 7.5M cards over the three BINs: every run gets fresh ones (the runs take about 6M)

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pingate-bench.XXXXXX")"
RES="$WORK/results"
mkdir -p "$RES"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  if [ "${STARTED_SERVICES:-0}" = 1 ]; then "$SVCROOT/scripts/services.sh" stop || true; fi
}
trap cleanup EXIT

machine() {
  {
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cores=$(nproc)"
    echo "mem_gib=$(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)"
    echo "kernel=$(uname -r)"
    echo "go=$(go env GOVERSION)"
    echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  } >"$RES/machine.txt"
}

# snapshot NAME: load average and the busiest processes, to say what else ran.
snapshot() {
  {
    echo "== $1 $(date -u +%H:%M:%S) load average: $(cut -d' ' -f1-3 /proc/loadavg); busiest over the next second:"
    top -b -n 2 -d 1 -o %CPU -w 120 | awk '/^top -/ {n++} n == 2 && /^ *[0-9]+ / {printf "%6s%%  %s\n", $9, $12}' | head -8
  } >>"$RES/activity.txt"
}

# wait_line FILE PATTERN [SECONDS]: wait up to SECONDS (30) for a line
# matching PATTERN.
wait_line() {
  for _ in $(seq "$((${3:-30} * 10))"); do
    if grep -qE "$2" "$1" 2>/dev/null; then grep -m1 -E "$2" "$1"; return 0; fi
    sleep 0.1
  done
  cat "$1" >&2 || true
  die "timed out waiting for '$2' in $1"
}

log "building pingate and pingate-dev"
go build -o "$WORK/pingate" ./cmd/pingate
go build -o "$WORK/pingate-dev" ./cmd/pingate-dev
PG="$WORK/pingate"
PGDEV="$WORK/pingate-dev" # the development tools: issuer-sim, load, bench-baseline
machine
snapshot start

# Redis and Kafka of our own: scripts/services.sh run from a copy under
# $WORK keeps its state there, so a test run elsewhere in the tree (which
# stops the shared services when it ends) cannot pull them from under the
# benchmark. The Kafka jars are shared with the tree's .services when present.
log "starting Redis and Kafka (scripts/services.sh, own instances)"
SVCROOT="$WORK/svc"
mkdir -p "$SVCROOT/scripts" "$SVCROOT/.services"
cp scripts/services.sh "$SVCROOT/scripts/"
cp -r scripts/kafka "$SVCROOT/scripts/"
if [ -f "$ROOT/.services/kafka-libs/.complete" ]; then
  ln -s "$ROOT/.services/kafka-libs" "$SVCROOT/.services/kafka-libs"
fi
STARTED_SERVICES=1
"$SVCROOT/scripts/services.sh" start
# shellcheck disable=SC1091
set -a; . "$SVCROOT/.services.env"; set +a

# A fresh topic per run. The broker creates it on the first write (its
# default auto.create.topics.enable); the outbox relay retries that first
# write, and events wait in the journal meanwhile.
TOPIC="pingate.bench.$(date +%s)"

# Issuer simulator: its own process when `pingate-dev issuer-sim` exists.
SIM_PROC=0
# The help is read whole before grep: in `help | grep -q` grep may exit first, and
# under pipefail pingate-dev's SIGPIPE then read as a missing command.
if grep -q '^  issuer-sim ' <<<"$("$PGDEV" help 2>&1)"; then
  SIM_PROC=1
  "$PGDEV" issuer-sim --addr 127.0.0.1:0 --seed 1 --per-bin "$PER_BIN" >"$WORK/sim.out" 2>"$WORK/sim.err" &
  PIDS+=($!)
  SIM_PID=$!
  SIM_ADDR="$(wait_line "$WORK/sim.out" '^[0-9.]+:[0-9]+$')"
  log "issuer simulator (own process) on $SIM_ADDR"
else
  log "pingate-dev issuer-sim not available: the gateway runs the simulator in-process"
fi
echo "sim_process=$SIM_PROC" >>"$RES/machine.txt"
echo "dup_window=$DUP_WINDOW" >>"$RES/machine.txt"
echo "quick=$QUICK" >>"$RES/machine.txt"
echo "duration=$DUR" >>"$RES/machine.txt"
echo "runs=$RUNS" >>"$RES/machine.txt"
echo "micro_count=$MICRO_COUNT" >>"$RES/machine.txt"
echo "soak_every=$SOAK_EVERY" >>"$RES/machine.txt"
# The support processes whose CPU every gateway run reports.
SUPPORT_CPU="redis=$(cat "$SVCROOT/.services/redis.pid"),kafka=$(cat "$SVCROOT/.services/kafka.pid")"
[ "$SIM_PROC" = 1 ] && SUPPORT_CPU="sim=$SIM_PID,$SUPPORT_CPU"

# gateway_config FILE EXTRA_ROUTES: the bench config with EXTRA_ROUTES filler
# card ranges (prefixes starting with 4, not overlapping the simulator's).
gateway_config() {
  local f="$1" extra="$2" hosts="[issuer-sim]"
  [ "$SIM_PROC" = 1 ] && hosts="[\"$SIM_ADDR\"]"
  cat >"$f" <<EOF
instance: bench
acquirer_listener: {addr: "127.0.0.1:0", max_conns: 1000, max_in_flight: 256}
http: {addr: "127.0.0.1:0"}
security: {dev_keys: true}
routing:
  institution: "999001"
  duplicate_window: $DUP_WINDOW
  acquirers:
    - {id: "100001", name: "bench ATM network", channel: atm, terminals: ["*"], keys: {1: dev-atm-zpk}, formats: [0, 3]}
    - {id: "200001", name: "bench branch front end", channel: branch, terminals: ["*"], keys: {1: dev-branch-zpk}, formats: [4]}
    - {id: "100003", name: "bench SM4 ATM network", channel: atm, terminals: ["*"], keys: {1: dev-sm4-atm-zpk}, zmk: dev-sm4-atm-zmk, formats: [0, 4], pin_algorithm: sm4}
  issuers:
    - {id: ssbank, institution: "300001", hosts: $hosts, pin_format: 4, key: dev-issuer-zpk, key_index: 1}
    - {id: sm4bank, institution: "300003", hosts: $hosts, pin_format: 4, pin_algorithm: sm4, key: dev-sm4-issuer-zpk, key_index: 2}
  routes:
    - {prefix: "62284812", issuer: ssbank}
    - {prefix: "62284813", issuer: ssbank}
    - {prefix: "621700", issuer: ssbank}
    - {prefix: "621700000005", issuer: sm4bank}
EOF
  if [ "$extra" -gt 0 ]; then
    awk -v n="$extra" 'BEGIN { for (i = 0; i < n; i++) printf "    - {prefix: \"4%09d\", issuer: ssbank}\n", i * 7 }' >>"$f"
  fi
  cat >>"$f" <<EOF
limits:
  backend: redis
  card_ops_per_day: 1000000
  card_wrong_pin_per_hour: 1000000
  terminal_rps: 1000
  terminal_burst: 1000
  acquirer_rps: 1000000
  acquirer_burst: 1000000
events: {journal_dir: "$WORK/journal-$extra", kafka_topic: "$TOPIC"}
reversals: {dir: "$WORK/reversals-$extra"}
log: {level: warn}
EOF
  if [ "$SIM_PROC" = 0 ]; then
    echo "issuer_sim: {seed: 1, per_bin: $PER_BIN}" >>"$f"
  fi
}

# hsm_config FILE HSM_ADDR: the bench config on security.module payshield
# against the simulator at HSM_ADDR (`pingate-dev hsm-sim`, the public test
# LMK): the development TDES keys under that LMK, the TDES ATM network only
# (a variant-LMK payShield holds no AES or SM4 key), and the issuer on ISO 3
# under dev-atm-zpk, which the issuer simulator takes at DE 53 key index 3.
hsm_config() {
  local f="$1" hsm="$2" hosts="[issuer-sim]"
  [ "$SIM_PROC" = 1 ] && hosts="[\"$SIM_ADDR\"]"
  cat >"$f" <<EOF
instance: bench-hsm
acquirer_listener: {addr: "127.0.0.1:0", max_conns: 1000, max_in_flight: 256}
http: {addr: "127.0.0.1:0"}
admin: {disabled: true}
branch: {enabled: false}
security:
  dev_keys: true
  module: payshield
  payshield: {hosts: ["$hsm"], connections: $HSM_CONNS}
routing:
  institution: "999001"
  duplicate_window: $DUP_WINDOW
  acquirers:
    - {id: "100001", name: "bench ATM network", channel: atm, terminals: ["*"], keys: {1: dev-atm-zpk}, formats: [0, 3]}
  issuers:
    - {id: ssbank, institution: "300001", hosts: $hosts, pin_format: 3, key: dev-atm-zpk, key_index: 3}
  routes:
    - {prefix: "62284812", issuer: ssbank}
    - {prefix: "62284813", issuer: ssbank}
    - {prefix: "621700", issuer: ssbank}
limits:
  backend: redis
  card_ops_per_day: 1000000
  card_wrong_pin_per_hour: 1000000
  terminal_rps: 1000
  terminal_burst: 1000
  acquirer_rps: 1000000
  acquirer_burst: 1000000
events: {journal_dir: "$WORK/journal-hsm", kafka_topic: "$TOPIC"}
reversals: {dir: "$WORK/reversals-hsm"}
log: {level: warn}
EOF
  if [ "$SIM_PROC" = 0 ]; then
    echo "issuer_sim: {seed: 1, per_bin: $PER_BIN, zpk: dev-atm-zpk}" >>"$f"
  fi
}

GW_PID=""
GW_ADDR=""
# serve NAME CONFIG: start `pingate serve` on CONFIG and wait until it is
# ready; sets SERVED_PID and SERVED_ADDR (its acquirer listener).
serve() {
  "$PG" serve --config "$2" --redis "$REDIS_ADDR" --kafka "$KAFKA_BROKERS" --kafka-topic "$TOPIC" \
    >"$WORK/gw-$1.out" 2>"$WORK/gw-$1.err" &
  SERVED_PID=$!
  PIDS+=("$SERVED_PID")
  local line
  line="$(wait_line "$WORK/gw-$1.out" '^pingate serving' 180)"
  SERVED_ADDR="$(sed -E 's/.*acquirer ([0-9.]+:[0-9]+).*/\1/' <<<"$line")"
  local http
  http="$(sed -E 's/.*http ([0-9.]+:[0-9]+).*/\1/' <<<"$line")"
  for _ in $(seq 100); do
    curl -sf "http://$http/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
}
# start_gateway EXTRA_ROUTES
start_gateway() {
  local cfg="$WORK/gateway-$1.yaml"
  gateway_config "$cfg" "$1"
  serve "$1" "$cfg"
  GW_PID="$SERVED_PID"
  GW_ADDR="$SERVED_ADDR"
  log "gateway ($1 extra routes) on $GW_ADDR, pid $GW_PID"
}
stop_gateway() {
  kill "$GW_PID" 2>/dev/null || true
  wait "$GW_PID" 2>/dev/null || true
}

"$PGDEV" bench-baseline --listen 127.0.0.1:0 >"$WORK/echo.out" 2>"$WORK/echo.err" &
PIDS+=($!)
ECHO_PID=$!
ECHO_ADDR="$(wait_line "$WORK/echo.out" '^echo server on' | awk '{print $4}')"
log "baseline echo server on $ECHO_ADDR"
"$PGDEV" bench-baseline --listen 127.0.0.1:0 --relay "$ECHO_ADDR" >"$WORK/relay.out" 2>"$WORK/relay.err" &
PIDS+=($!)
RELAY_PID=$!
RELAY_ADDR="$(wait_line "$WORK/relay.out" '^relay on' | awk '{print $3}')"
log "baseline relay on $RELAY_ADDR (to the echo server)"

OFFSET=0
# gw_load FILE CARDS ARGS...: one gateway run on fresh cards, JSON appended
# to FILE; the gateway is $GW_ADDR, or $LOAD_TARGET when set; LOAD_CPU_EXTRA
# (name=PID,...) adds processes to those whose CPU the run reports.
gw_load() {
  local file="$1" cards="$2"
  shift 2
  "$PGDEV" load --target "${LOAD_TARGET:-$GW_ADDR}" --per-bin "$PER_BIN" --card-offset "$OFFSET" --cards "$cards" \
    --duration "$DUR" --warmup "$WARMUP" --json --quiet --cpu "gateway=${LOAD_GW_PID:-$GW_PID},$SUPPORT_CPU${LOAD_CPU_EXTRA:+,$LOAD_CPU_EXTRA}" "$@" >>"$RES/$file.jsonl"
  OFFSET=$((OFFSET + cards))
}
# base_load FILE ARGS...: one single-hop baseline run (client → echo).
base_load() {
  local file="$1"
  shift
  "$PGDEV" bench-baseline --target "$ECHO_ADDR" --duration "$DUR" --warmup "$WARMUP" --json --quiet \
    --cpu "echo=$ECHO_PID" "$@" >>"$RES/$file.jsonl"
}
# relay_load FILE ARGS...: one relay baseline run (client → relay → echo).
relay_load() {
  local file="$1"
  shift
  "$PGDEV" bench-baseline --target "$RELAY_ADDR" --duration "$DUR" --warmup "$WARMUP" --json --quiet \
    --cpu "relay=$RELAY_PID,echo=$ECHO_PID" "$@" >>"$RES/$file.jsonl"
}
tps_of() { grep -o '"tps":[0-9.]*' "$RES/$1.jsonl" | tail -1 | cut -d: -f2; }
# median_tps NAME: the median req/s over the runs of NAME.
median_tps() { grep -o '"tps":[0-9.]*' "$RES/$1.jsonl" | cut -d: -f2 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

start_gateway 0
snapshot "gateway started"

log "peak: closed loop at $CONC, $RUNS runs each, single hop, gateway and relay alternating"
for i in $(seq "$RUNS"); do
  base_load baseline-peak --concurrency "$CONC"
  gw_load gateway-peak 100000 --concurrency "$CONC"
  relay_load relay-peak --concurrency "$CONC"
  log "  run $i: single hop $(tps_of baseline-peak), gateway $(tps_of gateway-peak), relay $(tps_of relay-peak) req/s"
done
base_load baseline-c1 --concurrency 1
PEAK="$(median_tps gateway-peak)"
RATE70="$(awk -v p="$PEAK" 'BEGIN {printf "%d", p * 0.7}')"
echo "rate70=$RATE70" >>"$RES/machine.txt"
log "latency at 70 % of the gateway's median peak ($PEAK/s): open loop at $RATE70/s"
for i in $(seq "$RUNS"); do
  gw_load gateway-70 100000 --concurrency 4x64 --rate "$RATE70"
  base_load baseline-70 --concurrency 4x64 --rate "$RATE70"
  relay_load relay-70 --concurrency 4x64 --rate "$RATE70"
done
snapshot "after peak and 70 %"

if [ "$HSM" != 0 ]; then
  # The payShield module beside the software module, same run: a second
  # gateway on security.module payshield against `pingate-dev hsm-sim`,
  # runs alternating with the software gateway above. Both take only ATM PIN
  # changes under TDES zone keys (mix change=100, no SM4 share): the traffic
  # a variant-LMK payShield serves.
  "$PGDEV" hsm-sim --addr 127.0.0.1:0 --header 4 >"$WORK/hsm.out" 2>"$WORK/hsm.err" &
  HSM_PID=$!
  PIDS+=("$HSM_PID")
  HSM_ADDR="$(wait_line "$WORK/hsm.out" '^[0-9.]+:[0-9]+$')"
  hsm_config "$WORK/gateway-hsm.yaml" "$HSM_ADDR"
  serve hsm "$WORK/gateway-hsm.yaml"
  HSM_GW_PID="$SERVED_PID"
  log "payShield gateway on $SERVED_ADDR (hsm-sim on $HSM_ADDR, $HSM_CONNS connections): $RUNS runs, closed loop at $CONC, beside the software gateway"
  echo "hsm_conns=$HSM_CONNS" >>"$RES/machine.txt"
  for i in $(seq "$RUNS"); do
    gw_load hsm-software 100000 --concurrency "$CONC" --mix change=100 --sm4-share 0
    LOAD_TARGET="$SERVED_ADDR" LOAD_GW_PID="$HSM_GW_PID" LOAD_CPU_EXTRA="hsm=$HSM_PID" gw_load hsm-payshield 100000 --concurrency "$CONC" --mix change=100 --sm4-share 0
    log "  run $i: software $(tps_of hsm-software), payshield $(tps_of hsm-payshield) req/s"
  done
  # The latency the module adds, read where neither gateway is saturated:
  # both open loop at one rate, half the software gateway's median peak
  # above (at 70 % the open loop's smaller batches already fill the cores,
  # and at peak p99 is queueing, which says nothing about the module).
  HSM_PEAK="$(median_tps hsm-software)"
  HSM_RATE="$(awk -v p="$HSM_PEAK" 'BEGIN {printf "%d", p * 0.5}')"
  echo "hsm_rate=$HSM_RATE" >>"$RES/machine.txt"
  log "payShield beside software, open loop at $HSM_RATE/s (half the software gateway's $HSM_PEAK/s)"
  for i in $(seq "$RUNS"); do
    gw_load hsm-software-open 30000 --concurrency 4x64 --rate "$HSM_RATE" --mix change=100 --sm4-share 0
    LOAD_TARGET="$SERVED_ADDR" LOAD_GW_PID="$HSM_GW_PID" LOAD_CPU_EXTRA="hsm=$HSM_PID" gw_load hsm-payshield-open 30000 --concurrency 4x64 --rate "$HSM_RATE" --mix change=100 --sm4-share 0
  done
  kill "$HSM_GW_PID" "$HSM_PID" 2>/dev/null || true
  wait "$HSM_GW_PID" "$HSM_PID" 2>/dev/null || true
  snapshot "after the payShield runs"
fi

log "cards: 1k, 100k and 1M cards, interleaved"
# Round by round, so that the machine's drift over the minutes of the bench
# (and the gateway's journal growing behind it) falls on every size alike.
for i in $(seq "$RUNS"); do
  for cards in 1000 100000 1000000; do gw_load "cards-$cards" "$cards" --concurrency "$CONC"; done
done

log "soak: $SOAK closed loop at $CONC, gateway memory sampled every $SOAK_EVERY s"
"$PGDEV" load --target "$GW_ADDR" --per-bin "$PER_BIN" --card-offset "$OFFSET" --cards 100000 \
  --duration "$SOAK" --warmup "$WARMUP" --json --quiet --concurrency "$CONC" --cpu "gateway=$GW_PID,$SUPPORT_CPU" >"$RES/soak.jsonl" &
SOAK_PID=$!
OFFSET=$((OFFSET + 100000))
t0=$(date +%s)
while kill -0 "$SOAK_PID" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status" 2>/dev/null || echo 0)
  echo "$(($(date +%s) - t0)) $rss" >>"$RES/soak-rss.txt"
  sleep "$SOAK_EVERY"
done
wait "$SOAK_PID"
snapshot "after soak"
stop_gateway

log "BIN ranges: 10, 100k and 1M card ranges in the routing table"
for extra in $RANGES; do
  start_gateway "$extra"
  for i in $(seq "$RUNS"); do gw_load "ranges-$((extra + 3))" 100000 --concurrency "$CONC"; done
  stop_gateway
done
snapshot "after ranges"

if [ "$MICRO" != 0 ]; then
  log "micro-benchmarks"
  micro() {
    local name="$1" pkg="$2" pat="$3" bt="$4"
    go test -run '^$' -bench "$pat" -benchtime "${MICRO_TIME:-$bt}" -count "$MICRO_COUNT" "$pkg" >"$RES/micro-$name.txt" 2>&1 ||
      log "micro-benchmark $name failed: $(tail -3 "$RES/micro-$name.txt")"
  }
  micro iso8583 ./iso8583/ 'BenchmarkPack|BenchmarkUnpack' 0.3s
  micro pinblock ./pinblock/ 'BenchmarkTranslate|BenchmarkKeyLookup' 0.3s
  micro routing ./routing/ 'BenchmarkBINLookup' 0.3s
  micro redislimit ./integration/redislimit/ 'BenchmarkAllow' 1s
  micro payshield ./integration/payshield/ 'BenchmarkPair' 0.5s
  micro outbox ./integration/outbox/ 'BenchmarkJournalAppend|BenchmarkBaselinePebbleSetSync|BenchmarkBaselineFileFsync' 0.5s
  snapshot "after micro-benchmarks"
fi

log "writing $OUT"
go run ./scripts/benchreport -results "$RES" -notes scripts/benchreport/notes.md >"$WORK/report.md"
mv "$WORK/report.md" "$OUT"
log "done: $OUT (raw results and logs in $WORK)"
