# Shared by the bench scripts (sourced, not run): the upstream every proxy is measured in front
# of, the certificate, the request id nginx sends (bench/nginx-job.conf), and small helpers.

# bench_upstream DIR PORT: writes DIR/upstream.conf, nginx answering every request with a
# 2-byte 200, pid and error log in DIR.
bench_upstream() {
  cat > "$1/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $1/up.pid; error_log $1/up.err warn;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$2 backlog=4096; keepalive_requests 1000000;
  location / { return 200 "ok"; } } }
CONF
}

# bench_cert DIR: DIR/tls.key and DIR/tls.crt, an ECDSA P-256 certificate for localhost and
# 127.0.0.1, valid two days.
bench_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$1/tls.key" -out "$1/tls.crt" 2>/dev/null
}

# The http-level map behind nginx-job.conf's `$rid`: a request id unique on the node without a
# random draw (nginx's `$request_id` reads 16 random bytes from OpenSSL, ~3,900 instructions a
# request more; the gateway's ids are v4 UUIDs from a fast non-cryptographic generator).
# shellcheck disable=SC2016
RID_MAP='map $connection_requests $rid { default "$pid-$msec-$connection-$connection_requests"; }'

# wait_up [curl args...] URL: until a request succeeds (10 s), else exits the script.
wait_up() { for _ in $(seq 1 200); do curl -sf -o /dev/null "$@" && return 0; sleep 0.05; done; echo "$* did not come up"; exit 1; }

# ticks PID: CPU ticks of a process and its children, "utime+stime utime".
ticks() {
  local total=0 user=0 u s
  for p in "$@" $(pgrep -P "$1" || true); do
    read -r u s < <(awk '{print $14, $15}' /proc/"$p"/stat 2>/dev/null || echo 0 0)
    total=$((total + u + s)); user=$((user + u))
  done
  echo "$total $user"
}

# tls_open_client: sets TLS_OPEN to the open-loop TLS client (bench/src/bin/tls_open.rs) —
# TLS_OPEN if set, else target/release/tls_open, built when missing — or to "" when there is
# none.
tls_open_client() {
  if [ -z "${TLS_OPEN:-}" ]; then
    TLS_OPEN=target/release/tls_open
    [ -x "$TLS_OPEN" ] || { echo "== building $TLS_OPEN"; cargo build --release -q -p tollgate-bench --bin tls_open || TLS_OPEN=; }
  fi
  [ -z "$TLS_OPEN" ] || [ -x "$TLS_OPEN" ] || TLS_OPEN=
}

# AWK_MEDIAN: an awk function, median(w, m), of the values w[1..m] (sorts w); put in front of
# an awk program that needs it.
# shellcheck disable=SC2016
AWK_MEDIAN='function median(w, m,   a, b, t) {
  for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (w[b] < w[a]) { t = w[a]; w[a] = w[b]; w[b] = t }
  return (m % 2) ? w[(m + 1) / 2] : (w[m / 2] + w[m / 2 + 1]) / 2 }
'
