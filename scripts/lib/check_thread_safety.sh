#!/usr/bin/env bash
# Clang's thread-safety analysis over the headers: every header on its own, and test files that
# instantiate the templates of the policy layer and the readers. Mutex-guarded members are
# annotated (include/offload/detail/thread_annotations.hpp); any access without the lock fails.
# Compiling every header, public and detail, on its own with the project's warning set
# (cmake/warnings.cmake) is also the check that each one is self-contained and warning-free.
# Usage: scripts/lib/check_thread_safety.sh   (from the repository root; needs clang++)
set -euo pipefail
cd "$(dirname "$0")/../.."
cxx=${OFFLOAD_CLANG:-clang++}
flags=(-std=c++20 -fsyntax-only -Wthread-safety -Wthread-safety-beta -Werror -Iinclude -Itests
       -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
       -Woverloaded-virtual -Wconversion -Wsign-conversion -Wdouble-promotion -Wformat=2
       -Wimplicit-fallthrough)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sources=()
while IFS= read -r header; do
  src="$work/$(echo "${header#include/}" | tr '/.' '__').cpp"
  printf '#include <%s>\n' "${header#include/}" > "$src"
  sources+=("$src")
done < <(find include/offload -name '*.hpp' | sort)
sources+=(tests/unit/retry_test.cpp tests/unit/key_test.cpp tests/unit/periodic_rate_test.cpp
          tests/metrics/metrics_test.cpp tests/unit/detail/policy_parts_test.cpp
          tests/unit/detail/rate_limiter_test.cpp tests/unit/detail/ledger_test.cpp
          tests/unit/detail/thread_cache_test.cpp)
printf '%s\n' "${sources[@]}" | xargs -P 2 -I{} "$cxx" "${flags[@]}" {}
echo "thread-safety analysis: ${#sources[@]} translation units clean"
