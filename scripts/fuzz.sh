#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, nightly toolchain); see docs/reliability.md.
#
#   scripts/fuzz.sh TARGET|all SECONDS [ARG...]   each target for SECONDS seconds
#   scripts/fuzz.sh TARGET|all -runs=N [ARG...]   each target for N executions
#                                   (ARGs go to libFuzzer, e.g. -max_total_time=600 as a cap)
#   scripts/fuzz.sh --cmin TARGET|all        fold what runs found into fuzz/corpus/TARGET, minimised
#   scripts/fuzz.sh --list                   the targets
#
# Runs start from the committed corpus (fuzz/corpus/TARGET) plus what earlier runs found
# (fuzz/work/TARGET, not committed); new inputs go to fuzz/work. Crashes are written to
# fuzz/artifacts/TARGET. One process per target, one target after another, under `nice`.
# Prints one summary line per target: executions, seconds, executions per second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"

targets() { sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^anycable-rs-fuzz$'; }

usage() { sed -n '2,14p' "$0"; exit 2; }

[[ $# -ge 1 ]] || usage
if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 1
fi

case "$1" in
  --list) targets; exit 0 ;;
  --cmin)
    [[ $# -eq 2 ]] || usage
    list=$([[ $2 == all ]] && targets || echo "$2")
    for target in $list; do
      mkdir -p "corpus/$target" "work/$target"
      cp -n "work/$target"/* "corpus/$target"/ 2>/dev/null || true
      nice cargo +nightly fuzz cmin -O "$target" "corpus/$target" -- -use_counters=0 2>&1 | grep -E '^(MERGE-OUTER|INFO: *[0-9]+ files)' || true
      echo "$target: $(ls "corpus/$target" | wc -l) files, $(cat "corpus/$target"/* | wc -c) bytes"
    done
    exit 0 ;;
  -h|--help) usage ;;
esac

[[ $# -ge 2 ]] || usage
list=$([[ $1 == all ]] && targets || echo "$1")
case "$2" in
  -runs=*) limit=("$2") ;;
  *[!0-9]*|'') usage ;;
  *) limit=("-max_total_time=$2") ;;
esac
limit+=("${@:3}")

for target in $list; do nice cargo +nightly fuzz build -O "$target" 2>/dev/null; done
status=0
for target in $list; do
  mkdir -p "work/$target" "corpus/$target" "artifacts/$target"
  log="work/$target.log"
  dict=()
  [[ -f "dict/$target.dict" ]] && dict=("-dict=dict/$target.dict")
  if ! nice cargo +nightly fuzz run -O "$target" "work/$target" "corpus/$target" -- \
      "${limit[@]}" "${dict[@]}" -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    status=1
    echo "$target: FAILED, see fuzz/$log and fuzz/artifacts/$target" >&2
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  echo "$target: ${runs:-0} executions, ${rate:-0} exec/s ($(date -u +%FT%TZ))"
done
exit $status
