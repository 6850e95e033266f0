#!/usr/bin/env bash
# The single test command of anycable-rs (CI runs it through .ci/run).
#
#   scripts/test.sh              everything: deps, services, fmt, clippy, build, cargo test, e2e
#   scripts/test.sh --e2e-only [FILE...]
#                                skip fmt/clippy/cargo test (still builds the release binary),
#                                optionally only the given e2e test files (e.g. e2e/actioncable.test.mjs)
#
# Environment knobs: E2E_CONCURRENCY (default 2), E2E_VERBOSE=1 (stream server output),
# SKIP_APT=1 (never call apt-get), ANYCABLE_BIN (use this binary instead of target/release).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

E2E_ONLY=0
E2E_FILES=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --e2e-only) E2E_ONLY=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) E2E_FILES+=("$1") ;;
  esac
  shift
done

START_ALL=$(date +%s)
STEP_START=$START_ALL
step() {
  local now; now=$(date +%s)
  echo
  echo "==> [$(date +%H:%M:%S), +$((now - START_ALL))s] $*"
  STEP_START=$now
}
done_step() { echo "    ok ($(( $(date +%s) - STEP_START ))s)"; }
die() { echo "ERROR: $*" >&2; exit 1; }
# Checks that should not hide the results of later ones (lint, tests): record the failure,
# go on, and fail at the end. A failing build still stops everything.
FAILED=()
LOG_DIR=$(mktemp -d)
trap 'rm -rf "$LOG_DIR"' EXIT
logged() { # file command... : run, copying the output to file (exit status of the command)
  local file=$1; shift
  "$@" 2>&1 | tee "$file"
}
check() { # name command...
  local name=$1; shift
  step "$name"
  if "$@"; then
    done_step
  else
    local rc=$?
    echo "    FAILED: $name (exit $rc, $(( $(date +%s) - STEP_START ))s)"
    FAILED+=("$name")
  fi
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else die "need root for: $*"
  fi
}

# ---------------------------------------------------------------------------
# 1. Dependencies
step "Chromium (Debian package) for the browser tests"
if [[ -x /usr/bin/chromium ]]; then
  echo "    /usr/bin/chromium present: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
elif [[ "${SKIP_APT:-0}" == 1 ]]; then
  die "/usr/bin/chromium is missing and SKIP_APT=1"
else
  export DEBIAN_FRONTEND=noninteractive
  apt_install() { as_root apt-get install -y --no-install-recommends chromium; }
  # apt-get update only when the package lists do not know chromium (or the install fails).
  if ! apt-cache show chromium >/dev/null 2>&1 || ! apt_install; then
    echo "    running apt-get update"
    as_root apt-get update
    apt_install
  fi
  [[ -x /usr/bin/chromium ]] || die "chromium install did not produce /usr/bin/chromium"
fi
done_step

step "npm dependencies in e2e/"
command -v node >/dev/null || die "node is not installed"
command -v npm >/dev/null || die "npm is not installed"
echo "    node $(node --version), npm $(npm --version 2>/dev/null)"
(
  cd e2e
  if [[ -f package-lock.json ]]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
)
done_step

step "Python prometheus_client (the reference text-format parser for e2e/metrics_prometheus.test.mjs)"
command -v python3 >/dev/null || die "python3 is not installed"
if python3 -c 'import prometheus_client' 2>/dev/null; then
  echo "    prometheus_client present"
else
  python3 -m pip install --quiet --disable-pip-version-check --no-input prometheus_client
  python3 -c 'import prometheus_client' || die "prometheus_client did not install"
fi
done_step

step "Tools for tests/deploy_examples.rs (PyYAML, kubernetes-validate, docker-compose, systemd-analyze, prlimit)"
if ! python3 -c 'import yaml, kubernetes_validate' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --no-input pyyaml kubernetes-validate
fi
python3 -c 'import yaml, kubernetes_validate' || die "PyYAML / kubernetes-validate did not install"
command -v kubernetes-validate >/dev/null || die "kubernetes-validate is not on PATH"
missing_debs=()
command -v docker-compose >/dev/null || missing_debs+=(docker-compose)
command -v systemd-analyze >/dev/null || missing_debs+=(systemd)
command -v prlimit >/dev/null || missing_debs+=(util-linux)
if [[ ${#missing_debs[@]} -gt 0 ]]; then
  [[ "${SKIP_APT:-0}" == 1 ]] && die "missing ${missing_debs[*]} and SKIP_APT=1"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y --no-install-recommends "${missing_debs[@]}" ||
    { as_root apt-get update && as_root apt-get install -y --no-install-recommends "${missing_debs[@]}"; }
fi
echo "    $(docker-compose version --short 2>/dev/null || echo '?') docker-compose, $(systemd-analyze --version | head -1)"
done_step

# ---------------------------------------------------------------------------
# 2. Services used by the server's tests (Redis, NATS with JetStream)
tcp_line() { # host port [send] -> first line the server answers (2 s bound)
  timeout 2 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    if [[ -n "${3:-}" ]]; then printf "%s\r\n" "$3" >&3; fi
    IFS= read -r line <&3 && printf "%s\n" "$line"
  ' _ "$@" 2>/dev/null || true
}
redis_ok() { [[ "$(tcp_line 127.0.0.1 6379 PING)" == +PONG* ]]; }
nats_ok() { tcp_line 127.0.0.1 4222 | grep -q '"jetstream":true'; }
wait_for() { # name check-function seconds
  local name=$1 check=$2 secs=$3 i
  for ((i = 0; i < secs * 4; i++)); do
    if "$check"; then echo "    $name answers"; return 0; fi
    sleep 0.25
  done
  die "$name did not answer within ${secs}s"
}

step "Redis on 127.0.0.1:6379"
if redis_ok; then
  echo "    Redis answers PONG"
else
  command -v redis-server >/dev/null || die "redis-server is not installed (Debian package redis-server)"
  echo "    starting redis-server"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_ok 20
fi
done_step

step "NATS with JetStream on 127.0.0.1:4222"
if nats_ok; then
  echo "    NATS answers with jetstream enabled"
else
  if tcp_line 127.0.0.1 4222 | grep -q '^INFO'; then
    die "a NATS server on 127.0.0.1:4222 answers but JetStream is not enabled"
  fi
  [[ -x /usr/sbin/nats-server ]] || command -v nats-server >/dev/null || die "nats-server is not installed (Debian package nats-server)"
  NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
  echo "    starting $NATS_BIN -js"
  as_root mkdir -p /var/lib/nats-server
  as_root start-stop-daemon --start --oknodo --background --exec "$NATS_BIN" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_for NATS nats_ok 20
fi
done_step

# ---------------------------------------------------------------------------
# 3. Rust: format, lint, build, tests
if [[ $E2E_ONLY == 0 ]]; then
  check "cargo fmt --all -- --check" cargo fmt --all -- --check
  check "cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
fi

step "cargo build --release"
cargo build --release
done_step

# The static binary (glibc linked in) for tests/static_binary.rs, which runs it in an empty
# root. A build of its own (another target directory), so it adds a release build's time.
if [[ $E2E_ONLY == 0 ]]; then
  step "static binary (scripts/static-build.sh)"
  scripts/static-build.sh
  done_step
fi

if [[ $E2E_ONLY == 0 ]]; then
  # --no-fail-fast: one failing test binary must not hide the others' results
  check "cargo test --release" logged "$LOG_DIR/cargo-test.log" cargo test --release --no-fail-fast
  # The load benchmark in its short mode: every scenario must run and print its figures (the
  # full figures are produced on demand, see docs/benchmarks.md).
  check "anycable-bench all --quick" target/release/anycable-bench all --quick
  # The leak check at full size (about 15 s): 10 000 idle subscribed connections held with pings
  # flowing; it fails on RSS growth beyond noise, a closed connection, or missing pings.
  check "anycable-bench idle (10 000 connections)" target/release/anycable-bench idle
fi

# ---------------------------------------------------------------------------
# 4. End-to-end tests: real npm clients and headless Chromium against the binary
export ANYCABLE_BIN="${ANYCABLE_BIN:-$ROOT/target/release/anycable-rs}"
[[ -x "$ANYCABLE_BIN" ]] || die "server binary not found: $ANYCABLE_BIN"

cd e2e
if [[ ${#E2E_FILES[@]} -gt 0 ]]; then
  FILES=()
  for f in "${E2E_FILES[@]}"; do FILES+=("$(basename "$f")"); done
else
  shopt -s nullglob
  FILES=(*.test.mjs)
  shopt -u nullglob
fi
[[ ${#FILES[@]} -gt 0 ]] || die "no e2e/*.test.mjs files found"
# Each test file starts its own server(s) on free ports; two files at a time fit 2 cores.
check "e2e: node --test ${FILES[*]} (ANYCABLE_BIN=$ANYCABLE_BIN)" \
  logged "$LOG_DIR/e2e.log" timeout --kill-after=30s 1500 \
  node --test --test-concurrency="${E2E_CONCURRENCY:-2}" --test-timeout=180000 --test-force-exit "${FILES[@]}"
cd "$ROOT"

# One plain closing line over both runners: cargo's "test result:" lines and node's "# pass/# fail/# cancelled".
PASSED_N=0
FAILED_N=0
if [[ -f "$LOG_DIR/cargo-test.log" ]]; then
  read -r p f < <(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' "$LOG_DIR/cargo-test.log" |
    awk '{p += $1; f += $2} END {print p + 0, f + 0}')
  PASSED_N=$((PASSED_N + p)); FAILED_N=$((FAILED_N + f))
fi
if [[ -f "$LOG_DIR/e2e.log" ]]; then
  read -r p f < <(awk '/^# pass [0-9]+$/ {p += $3} /^# (fail|cancelled) [0-9]+$/ {f += $3} END {print p + 0, f + 0}' "$LOG_DIR/e2e.log")
  PASSED_N=$((PASSED_N + p)); FAILED_N=$((FAILED_N + f))
fi

echo
if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "==> FAILED after $(( $(date +%s) - START_ALL ))s:"
  for f in "${FAILED[@]}"; do echo "    - $f"; done
  echo "summary: $PASSED_N passed, $FAILED_N failed"
  exit 1
fi
echo "==> all passed in $(( $(date +%s) - START_ALL ))s"
echo "summary: $PASSED_N passed, $FAILED_N failed"
