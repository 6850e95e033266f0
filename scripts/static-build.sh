#!/usr/bin/env bash
# Builds a static anycable-rs binary (no shared libraries, no dynamic loader): glibc linked
# statically with `+crt-static`. The explicit --target keeps the flag away from build scripts and
# proc-macros, which must stay dynamic; the binary lands in
# target/x86_64-unknown-linux-gnu/release/anycable-rs (or $CARGO_TARGET_DIR/...).
#
#   scripts/static-build.sh            build, then print the path of the binary
#
# Name resolution: a static glibc cannot load NSS plug-ins; it still reads /etc/hosts and asks
# DNS through /etc/resolv.conf. `localhost` names mean loopback without either (src/resolve.rs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET=x86_64-unknown-linux-gnu

# getrandom (used by rand) otherwise finds the getrandom(2) wrapper with dlsym, which a static
# binary cannot do, and falls back to /dev/urandom: absent in an empty root or a scratch image.
# This cfg makes it call the system call directly (Linux >= 3.17).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
  cargo build --release --locked --target "$TARGET" --bin anycable-rs >&2

BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release/anycable-rs"
# A static executable has no program interpreter (PT_INTERP) and no DT_NEEDED entries.
if readelf -l "$BIN" | grep -q 'INTERP'; then
  echo "ERROR: $BIN still asks for a dynamic loader" >&2
  exit 1
fi
if readelf -d "$BIN" | grep -q 'NEEDED'; then
  echo "ERROR: $BIN still needs shared libraries:" >&2
  readelf -d "$BIN" | grep NEEDED >&2
  exit 1
fi
echo "$BIN"
