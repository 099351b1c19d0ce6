#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build the strand program, run `strand demo`.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
strand_install_missing
strand_build "$STRAND_ROOT/build" strand_cli
exec "$STRAND_ROOT/build/cli/strand" demo "$@"
