#!/usr/bin/env bash
# Property-based test of the admin REST API against its own OpenAPI document.
#
# 1. validates /admin/v1/openapi.json as OpenAPI 3.1 (openapi-spec-validator);
# 2. runs schemathesis with every check and every phase (examples, coverage, fuzzing,
#    stateful) against a freshly started `tollgate admin` on a database of its own.
#
# It fails on any 5xx, any response the document does not describe (status, content type,
# headers, body schema), any request the document calls valid that is refused and any it
# calls invalid that is accepted, except the cases listed, with reasons, in
# schemathesis.toml next to this script. See docs/admin-api.md ("Conformance").
#
# Usage:   admin/tests/schemathesis.sh [SECONDS]      (time budget of the run; default 150)
# Needs:   PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres;
#          a database `tollgate_st_<pid>` is created there and dropped afterwards), psql,
#          curl, jq, and `pip install schemathesis openapi-spec-validator`.
# Env:     ST_SEED (reproduce a run), ST_MAX_EXAMPLES (default 20), TOLLGATE_BIN (a built
#          binary; default: `cargo build` and target/debug/tollgate).
set -euo pipefail

cd "$(dirname "$0")/../.."

BUDGET=${1:-150}
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-20}
BASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_NAME="tollgate_st_$$"
DB_URL="${BASE_URL%/*}/$DB_NAME"
WORK=$(mktemp -d)
ADMIN_PID=

say() { echo "schemathesis.sh: $*"; }

for tool in st openapi-spec-validator psql curl jq; do
    if ! command -v "$tool" >/dev/null; then
        say "$tool is not installed (pip install schemathesis openapi-spec-validator; apt-get install postgresql-client curl jq)" >&2
        exit 2
    fi
done

cleanup() {
    if [[ -n "$ADMIN_PID" ]]; then
        kill "$ADMIN_PID" 2>/dev/null || true
        wait "$ADMIN_PID" 2>/dev/null || true
    fi
    psql -q "$BASE_URL" -c "DROP DATABASE IF EXISTS $DB_NAME" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z "${TOLLGATE_BIN:-}" ]]; then
    cargo build --quiet --bin tollgate
    TOLLGATE_BIN=target/debug/tollgate
fi

psql -q "$BASE_URL" -c "CREATE DATABASE $DB_NAME" >/dev/null
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$TOLLGATE_BIN" admin --database-url "$DB_URL" --listen 127.0.0.1:0 --jwt-secret "$JWT_SECRET" \
    --log "warn,tollgate=info" >"$WORK/admin.log" 2>&1 &
ADMIN_PID=$!

# The admin logs the address it bound (port 0 picks a free one) once it is serving.
deadline=$((SECONDS + 60))
until ADDR=$(grep -o 'listening addr=[0-9.:]*' "$WORK/admin.log" | head -n1 | cut -d= -f2) && [[ -n "$ADDR" ]]; do
    if ((SECONDS >= deadline)) || ! kill -0 "$ADMIN_PID" 2>/dev/null; then
        say "the admin did not start:" >&2
        cat "$WORK/admin.log" >&2
        exit 1
    fi
    sleep 0.2
done
API="http://$ADDR/admin/v1"
PASSWORD=$(sed -n 's/^Created the owner account .* with password \(.*\)$/\1/p' "$WORK/admin.log")
say "admin at $API"

curl -fsS "$API/openapi.json" -o "$WORK/openapi.json"
openapi-spec-validator "$WORK/openapi.json"

# A login token rather than a personal access token: the stateful phase lists tokens and
# deletes them, which would end the run's authentication half-way.
TOKEN=$(jq -n --arg p "$PASSWORD" '{email: "admin@localhost", password: $p}' |
    curl -fsS "$API/auth/login" -H 'content-type: application/json' -d @- | jq -r .token)

seed_args=()
if [[ -n "${ST_SEED:-}" ]]; then
    seed_args=(--seed "$ST_SEED")
fi

# run_st SECONDS PHASES FILTER...: one schemathesis run over the operations FILTER selects.
# Every check runs (schemathesis 4's default). No `--checks all`: a check named on the command
# line outranks the per-operation exceptions in schemathesis.toml, and with it those
# exceptions silently never applied (a correct 404 after a cascading delete failed CI).
run_st() {
    local budget=$1 phases=$2
    shift 2
    st --config-file admin/tests/schemathesis.toml run "$API/openapi.json" \
        --header "Authorization: Bearer $TOKEN" \
        --phases "$phases" \
        --max-examples "$MAX_EXAMPLES" \
        --max-time "$budget" \
        "${seed_args[@]}" "$@"
}

# Admin users last, and without the stateful phase: generated data reuses ids it has seen
# (GET /me), so those operations can demote or disable the account driving the run once a
# second owner exists, and everything after that would only see 401/403.
USERS_BUDGET=$((BUDGET / 5))
say "schemathesis: up to $MAX_EXAMPLES examples per operation, ${BUDGET}s budget"
status=0
run_st $((BUDGET - USERS_BUDGET)) examples,coverage,fuzzing,stateful --exclude-tag users || status=$?
run_st "$USERS_BUDGET" examples,coverage,fuzzing --include-tag users || status=$?
exit "$status"
