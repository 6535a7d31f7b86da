#!/usr/bin/env bash
# Contract test of the records inquiry API (docs/records-openapi.yaml) against
# a live `pingate records run`: needs the PostgreSQL and Kafka of
# scripts/services.sh (PG_URL, KAFKA_BROKERS in the environment, as
# scripts/test.sh sets them). Makes a scratch database, migrates it with
# `pingate records migrate`, seeds one card's history (the OpenAPI examples'
# card token), starts the service with development certificates and runs
# schemathesis (installed by scripts/schemathesis.sh's pinned venv) with the
# development client certificate. Fails on any 5xx or answer outside the
# contract, or when schema-violating requests are accepted.
#
# Usage: scripts/schemathesis-records.sh [extra schemathesis arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
version=4.32.5
venv="$root/.services/schemathesis"
: "${PG_URL:?PG_URL not set: run ./scripts/services.sh start and load .services.env}"
: "${KAFKA_BROKERS:?KAFKA_BROKERS not set: run ./scripts/services.sh start and load .services.env}"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  echo "schemathesis: installing $version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$version"
fi

db=records_schemathesis
server_url=$(printf '%s' "$PG_URL" | sed -E 's|/[^/?]+(\?\|$)|/postgres\1|')
url=$(printf '%s' "$PG_URL" | sed -E "s|/[^/?]+(\\?\|\$)|/$db\\1|")
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  psql -q "$server_url" -c "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/pingate" ./cmd/pingate
psql -q "$server_url" -c "drop database if exists $db with (force)" -c "create database $db" >/dev/null
"$work/pingate" records migrate --postgres "$url" >/dev/null
card=0123456789abcdef0123456789abcdef
psql -q "$url" >/dev/null <<SQL
INSERT INTO events (ce_id, ce_type, ce_source, ce_time, card_token, known, topic, kafka_partition, kafka_offset)
VALUES ('1b4e28ba-2fa1-11d2-883f-0016d3cca427', 'pingate.pin.changed.v1', '/pingate/gw-1', '2026-11-03T09:30:00Z', '$card', true, 'seed', 0, 0);
INSERT INTO card_history (ce_id, card_token, ce_type, operation, outcome, response_code, channel, acquirer, terminal, issuer, received, completed)
VALUES ('1b4e28ba-2fa1-11d2-883f-0016d3cca427', '$card', 'pingate.pin.changed.v1', 'change', 'approved', '00', 'atm', 'ACQ1', 'ATM00042', 'ISS1', '2026-11-03T09:29:59Z', '2026-11-03T09:30:00Z');
SQL

cd "$work"
./pingate records run --postgres "$url" --kafka "$KAFKA_BROKERS" --topic pingate-records-schemathesis \
  --listen 127.0.0.1:0 --dev-certs "$work/certs" --log-level warn >run.out 2>run.log &
pid=$!
addr=""
for _ in $(seq 1 150); do
  kill -0 "$pid" 2>/dev/null || { echo "schemathesis: pingate records run exited:" >&2; cat run.log >&2; exit 1; }
  addr=$(sed -n 's/^records api listening on \(.*\)$/\1/p' run.out | head -1)
  [ -n "$addr" ] && break
  sleep 0.2
done
[ -n "$addr" ] || { echo "schemathesis: the records API did not start" >&2; cat run.log >&2; exit 1; }

status=0
"$venv/bin/schemathesis" run "$root/docs/records-openapi.yaml" \
  --url "https://$addr" \
  --request-cert "$work/certs/records-client.pem" --request-cert-key "$work/certs/records-client-key.pem" \
  --tls-verify "$work/certs/ca.pem" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-40}" \
  --workers 1 \
  --no-color \
  "$@" || status=$?
if grep -q '"level":"ERROR"' run.log; then
  echo "schemathesis: the records service logged errors:" >&2
  grep '"level":"ERROR"' run.log >&2
  status=1
fi
exit "$status"
