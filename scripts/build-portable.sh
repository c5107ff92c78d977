#!/usr/bin/env bash
# Builds a `release` binary that runs on older Linux distributions: linked against glibc
# GLIBC_BASELINE (default 2.17: CentOS 7, Amazon Linux 2 and everything newer) with
# cargo-zigbuild, which links with zig's glibc stubs of that version instead of the build
# machine's glibc. Then checks the result with scripts/glibc-requirement.sh.
#
# Needs, once:
#   python3 -m venv ~/.venvs/zig && ~/.venvs/zig/bin/pip install ziglang
#   cargo install cargo-zigbuild --locked
# and `zig` on PATH, or the venv's `python3` first on PATH (cargo-zigbuild then runs
# `python3 -m ziglang`); ZIG_VENV=DIR puts DIR/bin first on PATH for you.
#
#   scripts/build-portable.sh            # glibc 2.17
#   scripts/build-portable.sh 2.26
# The binary: $CARGO_TARGET_DIR (or target)/x86_64-unknown-linux-gnu/release/release
set -euo pipefail

baseline=${1:-2.17}
target=x86_64-unknown-linux-gnu
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n ${ZIG_VENV:-} ]]; then
    export PATH="$ZIG_VENV/bin:$PATH"
fi
if ! cargo zigbuild --help >/dev/null 2>&1; then
    echo "$0: cargo-zigbuild is missing: cargo install cargo-zigbuild --locked" >&2
    exit 2
fi
if ! command -v zig >/dev/null && ! python3 -c 'import ziglang' 2>/dev/null; then
    echo "$0: zig is missing: pip install ziglang (in a venv; set ZIG_VENV to it)" >&2
    exit 2
fi

cd "$root"
started=$(date +%s)
cargo zigbuild --locked --release --target "$target.$baseline"
binary=${CARGO_TARGET_DIR:-$root/target}/$target/release/release
echo "built $binary in $(($(date +%s) - started)) s"
echo "glibc required: $("$root/scripts/glibc-requirement.sh" "$binary" "$baseline")"
"$binary" --version
