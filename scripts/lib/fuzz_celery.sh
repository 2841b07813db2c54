#!/usr/bin/env bash
# A bounded libFuzzer run of the Celery decoders (tests/fuzz/celery_decode_fuzz.cpp) under
# AddressSanitizer and UndefinedBehaviorSanitizer, seeded with the messages and documents
# captured from Celery (tests/broker/celery). A crash, a sanitizer report or an unexpected
# exception fails it and leaves the input in the work folder it names; copy it into
# tests/fuzz/regressions so that every build replays it.
# Usage: scripts/lib/fuzz_celery.sh [seconds] [seed]   (default 60 s, a random seed; needs clang++
# and libfuzzer-14-dev). With a seed the run is repeatable: ./scripts/test gives one, so that CI
# fails only on what a change did, and a long run without one explores further.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
seed_flag=()
if [[ -n "${2:-}" ]]; then
  seed_flag=(-seed="$2" -runs=$((seconds * 1000)))
fi
cxx=${OFFLOAD_CLANG:-clang++}
work=$(mktemp -d /tmp/offload-fuzz.XXXXXX)
"$cxx" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Isrc -Iinclude tests/fuzz/celery_decode_fuzz.cpp \
  src/offload/broker/celery/{base64,iso8601,python_json,result_document,task_message}.cpp \
  -o "$work/celery_decode_fuzz"
mkdir -p "$work/corpus"
find tests/broker/celery tests/fuzz/regressions -type f -name '*.json' -exec cp {} "$work/corpus/" \;
if ! (cd "$work" && ./celery_decode_fuzz -max_total_time="$seconds" "${seed_flag[@]}" -max_len=65536 \
        -print_final_stats=1 corpus > fuzz.log 2>&1); then
  tail -40 "$work/fuzz.log"
  echo "fuzz_celery: failed; the input is in $work (crash-*, leak-*, timeout-*)" >&2
  exit 1
fi
grep -E "^stat::number_of_executed_units|^Done" "$work/fuzz.log" || true
echo "fuzz_celery: ${seconds} s without a crash"
rm -rf "$work"
