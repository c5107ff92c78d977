#!/usr/bin/env bash
# Prints the newest glibc symbol version BINARY needs (e.g. `GLIBC_2.34`), or `none` for a
# static binary. With MAX (e.g. 2.17), exits 1 when BINARY needs a newer glibc than MAX: a CI
# step can then refuse a binary that would not start on the oldest distribution in the fleet.
#
#   scripts/glibc-requirement.sh target/release/release
#   scripts/glibc-requirement.sh target/release/release 2.34
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 BINARY [MAX_GLIBC_VERSION]" >&2
    exit 2
fi
binary=$1
max=${2:-}
if [[ ! -f $binary ]]; then
    echo "$0: no such file: $binary" >&2
    exit 2
fi
# The versions come from the dynamic symbol table: what the loader checks at start-up. readelf
# is in binutils like objdump; use whichever the machine has.
if command -v objdump >/dev/null; then
    symbols=$(objdump -T "$binary" 2>/dev/null || true)
elif command -v readelf >/dev/null; then
    symbols=$(readelf --dyn-syms -W "$binary" 2>/dev/null || true)
else
    echo "$0: needs objdump or readelf (binutils)" >&2
    exit 2
fi
required=$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$symbols" | sort -u -V | tail -n 1 || true)
if [[ -z $required ]]; then
    echo "none"
    exit 0
fi
echo "$required"
if [[ -n $max ]]; then
    newest=$(printf '%s\n%s\n' "${required#GLIBC_}" "$max" | sort -V | tail -n 1)
    if [[ $newest != "$max" ]]; then
        echo "$0: $binary needs $required, newer than the allowed glibc $max" >&2
        exit 1
    fi
fi
