# Shared by bench/build.sh, bench/install.sh and bench/push.sh (sourced, not run): the tools, the frozen source
# tree, a private loopback world with s3s-fs, timing with GNU time, statistics and verdicts.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cache=${BENCH_CACHE:-$HOME/.cache/release-bench}
target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/release-target}
source_tree=${BENCH_SOURCE:-${CARGO_HOME:-$HOME/.cargo}/registry/src}
runs=${BENCH_RUNS:-3}
artifact=bench
log() { printf '==> %s\n' "$*" >&2; }
mkdir -p "$cache"

# --- Tools, each installed only if missing (as in build.sh).
need_tools() {
  if [ ! -x /usr/bin/time ]; then # GNU time: peak RSS, user and system seconds
    log "installing GNU time"; apt-get update -qq && apt-get install -y -qq time >/dev/null
  fi
  s3s=$cache/bin/s3s-fs
  if [ ! -x "$s3s" ]; then # 0.14.1: the last s3s-fs that builds on rustc 1.95 (DESIGN.md)
    log "installing s3s-fs into $cache"
    cargo install --quiet --root "$cache" s3s-fs --version 0.14.1 --features binary
  fi
  if ! command -v aws >/dev/null; then
    if [ ! -x "$cache/awscli/bin/aws" ]; then
      log "installing awscli into $cache/awscli"
      python3 -m venv "$cache/awscli" && "$cache/awscli/bin/pip" install --quiet awscli
    fi
    PATH=$cache/awscli/bin:$PATH
  fi
  # pyenv's `aws` is a shim that needs pyenv's own environment; hosts get the real one's dir.
  aws_dir=$(dirname "$(command -v pyenv >/dev/null && pyenv which aws 2>/dev/null || command -v aws)")
}

# The binary is copied into the run dir, so a `cargo build` elsewhere cannot swap it mid-run.
build_release() { # needs $run
  local src
  if [ -n "${RELEASE_BIN:-}" ]; then src=$RELEASE_BIN; else
    log "cargo build --release (waits if another build holds the lock)"
    (cd "$repo" && CARGO_TARGET_DIR=$target_dir cargo build --release --quiet)
    src=$target_dir/release/release
  fi
  mkdir -p "$run/bin" && cp "$src" "$run/bin/release"
  bin=$run/bin/release
}

# --- The tree: the frozen copy of real crate sources that build.sh makes (or generates).
ensure_tree() {
  tree=$cache/tree
  if [ ! -d "$tree/src" ]; then
    rm -rf "$tree.tmp" && mkdir -p "$tree.tmp/src"
    if [ -d "$source_tree" ] && [ "$(du -sm "$source_tree" | cut -f1)" -ge 100 ]; then
      log "copying $source_tree to $tree"; cp -a "$source_tree/." "$tree.tmp/src/"
    else
      log "no source tree of 100 MB+ at $source_tree: generating ${BENCH_GEN_MB:-300} MiB"
      awk -v root="$tree.tmp/src" -v mb="${BENCH_GEN_MB:-300}" -f "$here/gen-tree.awk"
    fi
    mv "$tree.tmp" "$tree"
  fi
}

# --- A private world: dummy credentials, no profile or metadata service, loopback only.
# The EXIT trap runs every command pushed with on_exit, newest first (by PID, never by name).
cleanups=()
on_exit() { cleanups+=("$1"); }
run_cleanups() {
  local i
  for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do eval "${cleanups[$i]}" || true; done
}
trap run_cleanups EXIT
make_run_dir() { # BENCH_KEEP=1 keeps both scratch dirs (logs, outputs) for a look afterwards
  run=$(mktemp -d "$cache/run.XXXXXX")
  shm=$(mktemp -d /dev/shm/release-bench.XXXXXX)
  if [ -n "${BENCH_KEEP:-}" ]; then on_exit 'log "kept $run and $shm"'; else on_exit 'rm -rf "$run" "$shm"'; fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start_s3() { # needs $run; sets $endpoint and the AWS environment
  local port; port=$(free_port)
  endpoint=http://127.0.0.1:$port
  unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE
  export AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ENDPOINT_URL=$endpoint AWS_ENDPOINT_URL_S3=$endpoint
  # The user's ~/.aws must not leak in; path-style because 127.0.0.1 has no bucket subdomains.
  export AWS_CONFIG_FILE=$run/aws-config AWS_SHARED_CREDENTIALS_FILE=$run/aws-credentials
  printf '[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n' >"$AWS_CONFIG_FILE"
  : >"$AWS_SHARED_CREDENTIALS_FILE"
  # Fixed build inputs: no git repository needed, the same archive bytes on every run.
  export GIT_COMMIT=0123456789abcdef0123456789abcdef01234567 SOURCE_DATE_EPOCH=1700000000
  export GIT_BRANCH=bench BUILD_NUMBER=1 BUILD_TIMESTAMP=2024-01-01T00:00:00Z
  mkdir -p "$run/s3"
  "$s3s" --host 127.0.0.1 --port "$port" --access-key test --secret-key test "$run/s3" \
    >"$run/s3s-fs.log" 2>&1 &
  s3pid=$!; on_exit 'kill $s3pid 2>/dev/null; wait $s3pid 2>/dev/null'
  for _ in $(seq 50); do # at most ~10 s
    if curl -s -o /dev/null --max-time 0.1 "$endpoint/"; then return 0; fi
    kill -0 "$s3pid" 2>/dev/null || { cat "$run/s3s-fs.log" >&2; exit 1; }
    sleep 0.1
  done
  log "s3s-fs did not answer on $endpoint"; exit 1
}

# --- Timing. timed KEY CMD...: GNU time's wall, user, system seconds and peak RSS (KiB) of CMD
# go to secs/usr/sys/rss[KEY]; its stdout to $run/KEY.out. Any failure stops the benchmark.
declare -A secs usr sys rss
timed() {
  local key=$1; shift
  if ! /usr/bin/time -f '%e %U %S %M' -o "$run/time" "$@" >"$run/$key.out" 2>"$run/$key.err"; then
    log "$key failed: $(tail -1 "$run/time")"; tail -20 "$run/$key.err" >&2; exit 1
  fi
  read -r "secs[$key]" "usr[$key]" "sys[$key]" "rss[$key]" <"$run/time"
}
# stats ARRAY NAME: "min median max" of ARRAY[NAME#1..runs].
stats() {
  local -n a=$1; local i
  for ((i = 1; i <= runs; i++)); do echo "${a[$2#$i]}"; done | sort -g |
    awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
           printf "%s %s %s\n", v[1], m, v[NR] }'
}
median() { stats "$1" "$2" | cut -d' ' -f2; }
# range ARRAY NAME [SCALE]: "median (min-max)", values divided by SCALE (e.g. 1024 for MB).
range() {
  stats "$1" "$2" | awk -v s="${3:-1}" '{ printf "%.2f (%.2f-%.2f)", $2 / s, $1 / s, $3 / s }'
}
verdict() { # DESCRIPTION VALUE AWK-CONDITION-ON-v
  local ok=FAIL
  if awk -v v="$2" "BEGIN { exit !($3) }"; then ok=PASS; fi
  printf '%-4s %-62s %s\n' "$ok" "$1" "$2"
}
