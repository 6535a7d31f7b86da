#!/usr/bin/env bash
# Contract test of the branch API (docs/openapi.yaml) against a live gateway:
# installs schemathesis (PyPI, pinned) into a venv under .services/, starts
# `pingate serve` on the embedded defaults (development keys and
# certificates, ephemeral ports) in a scratch directory, makes one reset
# pending approval, and runs schemathesis twice against /v1/openapi.yaml
# (examples, coverage, fuzzing and stateful phases; configuration in
# scripts/schemathesis.toml): with the teller's certificate, then with the
# supervisor's. Fails if any answer is a 5xx or outside the contract (status
# code, content type, headers, body schema), if schema-violating requests are
# accepted or schema-valid ones refused (positive_data_acceptance), if the
# gateway logs an error, or if the runs' cassettes show no PIN operation
# answered 200/202 by the flow and no approval answered 200
# (scripts/schemathesis_answers.py).
#
# Usage: scripts/schemathesis.sh [extra schemathesis arguments]
#   SCHEMATHESIS_MAX_EXAMPLES (default 15) bounds the examples per operation.
#   SCHEMATHESIS_KEEP=DIR keeps the runs' VCR cassettes in DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
version=4.32.5
venv="$root/.services/schemathesis"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  echo "schemathesis: installing $version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$version"
fi

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/pingate" ./cmd/pingate
cd "$work"
./pingate serve --acquirer-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 >serve.out 2>serve.log &
pid=$!

# The branch API logs its address; /readyz says when the issuer has signed on.
addr="" http=""
for _ in $(seq 1 150); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "schemathesis: pingate serve exited:" >&2
    cat serve.log >&2
    exit 1
  fi
  addr=$(python3 - serve.log <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if r.get("msg") == "branch api listening":
        print(r["addr"])
        break
EOF
)
  http=$(sed -n 's/.*http \([0-9.:]*\).*/\1/p' serve.out | head -1)
  if [ -n "$addr" ] && [ -n "$http" ] && curl -fsS "http://$http/readyz" >/dev/null 2>&1; then
    break
  fi
  sleep 0.2
done
if [ -z "$addr" ]; then
  echo "schemathesis: the branch API did not start" >&2
  cat serve.log >&2
  exit 1
fi

certs="$work/var/dev-certs"
# A reset pending approval, made by the teller: the lookups and the
# supervisor's approvals of the runs below act on it.
pending=$(curl -fsS --cacert "$certs/ca.pem" --cert "$certs/teller.pem" --key "$certs/teller-key.pem" \
  -H 'Content-Type: application/json' "https://$addr/v1/pin/resets" \
  -d '{"pan":"6228481200000011","branch":"BR0117","terminal":"BR0117T1","teller":"T0117-07",
       "identity_check_ref":"IDCHK-CONTRACT-1","mode":"generated"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["operation_id"])')
export SCHEMATHESIS_OPERATION="$pending"

# One run per certificate: the teller (every operation; its approvals are
# 403) and the supervisor (approvals of the teller's reset, and its own
# operations). Each run writes a VCR cassette of every request and answer.
status=0
run() { # run NAME IDENTITY-ID [extra arguments]
  local name=$1 id=$2
  shift 2
  SCHEMATHESIS_TELLER=$id "$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" \
    run "https://$addr/v1/openapi.yaml" \
    --url "https://$addr" \
    --request-cert "$certs/$name.pem" --request-cert-key "$certs/$name-key.pem" \
    --tls-verify "$certs/ca.pem" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-15}" \
    --workers 1 \
    --no-color \
    --report vcr --report-vcr-path "$work/$name.cassette.yaml" \
    "$@" || status=$?
}
run teller T0117-07 "$@"
run supervisor S0117-01 "$@"

# The runs must have reached the PIN flow: real 200/202 answers to
# operations, and a supervisor's 200 to an approval.
python3 "$root/scripts/schemathesis_answers.py" "$work/teller.cassette.yaml" "$work/supervisor.cassette.yaml" || status=1
if grep -q '"level":"ERROR"' serve.log; then
  echo "schemathesis: the gateway logged errors:" >&2
  grep '"level":"ERROR"' serve.log >&2
  status=1
fi
[ -n "${SCHEMATHESIS_KEEP:-}" ] && cp "$work"/*.cassette.yaml "$SCHEMATHESIS_KEEP"/
exit "$status"
