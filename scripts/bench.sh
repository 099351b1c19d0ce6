#!/usr/bin/env bash
# Builds the benchmarks (Release) and runs them; each prints its ratio table against its peers.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
strand_install_missing
strand_build "$STRAND_ROOT/build-bench" "" -DCMAKE_BUILD_TYPE=Release -DSTRAND_BUILD_TESTS=OFF
for bench in "$STRAND_ROOT"/build-bench/bench/strand_*_bench; do
  echo "== $(basename "$bench")"
  "$bench" "${@:---benchmark_repetitions=5}"
done
