#!/usr/bin/env bash
# Quick start, command 2: install what is missing, build everything, run every test (unit,
# examples, integration). STRAND_SANITIZE=thread or =address (ASan+UBSan) runs the suite in a
# sanitized build of its own (build-tsan/, build-asan/).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
strand_install_missing

# Sanitized builds: line tables only (-g1) compile faster than full debug information and still
# give sanitizer reports with function names and lines. (-O1 would be faster still, but GCC 12 then
# reports false -Wmaybe-uninitialized on std::optional.)
sanitized=(-DSTRAND_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG")

case "${STRAND_SANITIZE:-}" in
  # The benchmarks are built by scripts/bench.sh, not here: they are programs to run by hand.
  "") dir="$STRAND_ROOT/build"; options=(-DSTRAND_BUILD_BENCH=OFF) ;;
  thread) dir="$STRAND_ROOT/build-tsan"
    options=(-DSTRAND_SANITIZE=thread "${sanitized[@]}")
    export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$STRAND_ROOT/tests/tsan.supp ${TSAN_OPTIONS:-}" ;;
  address) dir="$STRAND_ROOT/build-asan"
    options=(-DSTRAND_SANITIZE=address "${sanitized[@]}")
    export ASAN_OPTIONS="detect_leaks=1 detect_stack_use_after_return=1 ${ASAN_OPTIONS:-}"
    export UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1 ${UBSAN_OPTIONS:-}" ;;
  *) echo "STRAND_SANITIZE must be empty, thread or address" >&2; exit 2 ;;
esac

strand_build "$dir" "" "${options[@]}"
cd "$dir"
ctest --output-on-failure -j "$(nproc)" "$@"
