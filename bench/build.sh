#!/usr/bin/env bash
# Benchmark of issue 2: `release build` against the old Jenkins build job (`tar czf` or `tar cf`,
# then `aws s3 cp` twice), side by side in one run, against s3s-fs on loopback so the S3 server
# is not the bottleneck. Prints wall time, peak RSS and bytes stored, then the issue's targets
# as PASS/FAIL. Exits 0 after printing whatever the verdicts; non-zero if a step fails.
# Knobs and caveats: bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cache=${BENCH_CACHE:-$HOME/.cache/release-bench}
target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/release-target}
source_tree=${BENCH_SOURCE:-${CARGO_HOME:-$HOME/.cargo}/registry/src}
gen_mb=${BENCH_GEN_MB:-300}
artifact=bench
log() { printf '==> %s\n' "$*" >&2; }
mkdir -p "$cache"

# --- Tools. Each is installed only if missing, into bench-local places where possible.
# GNU time: bash's `time` keyword has no peak-RSS figure.
if [ ! -x /usr/bin/time ]; then
  log "installing GNU time"; apt-get update -qq && apt-get install -y -qq time >/dev/null
fi
s3s=$cache/bin/s3s-fs
if [ ! -x "$s3s" ]; then
  # 0.14.1 is the last s3s-fs that builds on rustc 1.95 (DESIGN.md, Test world).
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
if [ -n "${RELEASE_BIN:-}" ]; then bin=$RELEASE_BIN; else
  log "cargo build --release (waits if another build holds the lock)"
  (cd "$repo" && CARGO_TARGET_DIR=$target_dir cargo build --release --quiet)
  bin=$target_dir/release/release
fi

# --- The tree: a frozen copy of a real source tree (so a cargo download mid-run cannot change
# it), or a generated one. Cached across runs; delete $cache/tree to refresh it.
tree=$cache/tree
dirs=(src) # the PATHs given to every method, relative to $tree
if [ ! -d "$tree/src" ]; then
  rm -rf "$tree.tmp" && mkdir -p "$tree.tmp/src"
  if [ -d "$source_tree" ] && [ "$(du -sm "$source_tree" | cut -f1)" -ge 100 ]; then
    log "copying $source_tree to $tree"; cp -a "$source_tree/." "$tree.tmp/src/"
  else
    log "no source tree of 100 MB+ at $source_tree: generating $gen_mb MiB"
    awk -v root="$tree.tmp/src" -v mb="$gen_mb" -f "$here/gen-tree.awk"
  fi
  mv "$tree.tmp" "$tree"
fi

# --- A private world: dummy credentials, no profile or metadata service, loopback only.
run=$(mktemp -d "$cache/run.XXXXXX")
s3pid=
cleanup() {
  if [ -n "$s3pid" ]; then kill "$s3pid" 2>/dev/null || true; wait "$s3pid" 2>/dev/null || true; fi
  rm -rf "$run"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint=http://127.0.0.1:$port
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE
export AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL=$endpoint AWS_ENDPOINT_URL_S3=$endpoint
# The user's ~/.aws must not leak in; path-style because 127.0.0.1 has no bucket subdomains.
export AWS_CONFIG_FILE=$run/aws-config AWS_SHARED_CREDENTIALS_FILE=$run/aws-credentials
printf '[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n' >"$AWS_CONFIG_FILE"
: >"$AWS_SHARED_CREDENTIALS_FILE"
# The build's inputs are fixed, so every run archives the same bytes (no git repo needed).
export GIT_COMMIT=0123456789abcdef0123456789abcdef01234567 SOURCE_DATE_EPOCH=1700000000
export GIT_BRANCH=bench BUILD_NUMBER=1 BUILD_TIMESTAMP=2024-01-01T00:00:00Z

mkdir -p "$run/s3"
"$s3s" --host 127.0.0.1 --port "$port" --access-key test --secret-key test "$run/s3" \
  >"$run/s3s-fs.log" 2>&1 &
s3pid=$!
for _ in $(seq 50); do # at most ~10 s: 50 tries of a 0.1 s sleep plus a 0.1 s connect timeout
  if curl -s -o /dev/null --max-time 0.1 "$endpoint/"; then break; fi
  kill -0 "$s3pid" 2>/dev/null || { cat "$run/s3s-fs.log" >&2; exit 1; }
  sleep 0.1
done
curl -s -o /dev/null --max-time 1 "$endpoint/" || { log "s3s-fs did not answer on $endpoint"; exit 1; }
probe_lines=$(wc -l <"$run/s3s-fs.log") # the unsigned probes above are logged as AccessDenied

# --- Methods. Each gets its own bucket (a directory in s3s-fs's root) so bytes are per method.
# timed NAME CMD...: runs CMD in $tree under GNU time; its stdout goes to $run/NAME.out.
declare -A secs rss bytes
timed() {
  local name=$1; shift
  if ! (cd "$tree" && /usr/bin/time -f '%e %M' -o "$run/time" "$@" >"$run/$name.out"); then
    log "$name failed: $(head -1 "$run/time")"; cat "$run/$name.out" >&2; exit 1
  fi
  read -r "secs[$name]" "rss[$name]" <"$run/time"
}
stored() { # total bytes of every object in a bucket, as S3 lists them
  aws s3 ls "s3://$1" --recursive --summarize | awk '/Total Size:/ { print $3 }'
}
release_build() { # NAME BUILD-FLAGS...
  local name=$1; shift
  mkdir "$run/s3/$name"
  timed "$name" "$bin" -q --artifact "$artifact" --bucket "$name" --output json \
    build "${dirs[@]}" "$@"
  bytes[$name]=$(stored "$name")
}
# The old job: archive (RELEASE as last member), then two uploads with SSE, as in Jenkins.
old_way() { # BUCKET TAR-FLAGS EXT DIR...
  local bucket=$1 flags=$2 ext=$3; shift 3
  tar "$flags" "$RUN/x.$ext" -C "$TREE" "$@" -C "$RUN" RELEASE
  aws s3 cp --only-show-errors --sse AES256 "$RUN/x.$ext" "s3://$bucket/$ARTIFACT/prod/$ARTIFACT-1.$ext"
  aws s3 cp --only-show-errors --sse AES256 "$RUN/RELEASE" "s3://$bucket/$ARTIFACT/prod/latest.txt"
  rm -f "$RUN/x.$ext"
}
export -f old_way
export RUN=$run TREE=$tree ARTIFACT=$artifact
printf 'MODULE=%s\nVERSION=1\nBUILD=1\nGIT_COMMIT=%s\nTIMESTAMP=%s\n' \
  "$artifact" "$GIT_COMMIT" "$BUILD_TIMESTAMP" >"$run/RELEASE"
old() { # NAME TAR-FLAGS EXT
  mkdir "$run/s3/$1"
  timed "$1" bash -euo pipefail -c 'old_way "$@"' old_way "$1" "$2" "$3" "${dirs[@]}"
  bytes[$1]=$(stored "$1")
}

# GNU tar skips reading file contents when the archive is /dev/null, so pipe through cat:
# the first pass warms the page cache for every method, the second times reading alone.
read_tree='tar cf - "$@" | cat >/dev/null'
log "tree: $(du -sh "$tree/src" | cut -f1), $(find "$tree/src" -type f | wc -l) files; warming the page cache"
timed warm-up bash -o pipefail -c "$read_tree" read_tree "${dirs[@]}"
timed tar-read bash -o pipefail -c "$read_tree" read_tree "${dirs[@]}"

log "release build (gzip, default)"; release_build rel-gzip
log "release build --compression zstd"; release_build rel-zstd --compression zstd
log "release build --compression none"; release_build rel-none --compression none
log "old way A: tar czf + aws s3 cp x2"; old old-a czf tar.gz
log "old way B: tar cf + aws s3 cp x2"; old old-b cf tar

# --- Report.
label() {
  case $1 in
    rel-gzip) echo "release build (gzip -1, default)" ;; rel-zstd) echo "release build --compression zstd" ;;
    rel-none) echo "release build --compression none" ;; old-a) echo "old A: tar czf + aws s3 cp x2" ;;
    old-b) echo "old B: tar cf + aws s3 cp x2" ;; tar-read) echo "tar cf - | cat (reading only)" ;;
  esac
}
echo
echo "release build benchmark: $(nproc) CPUs (1-min load $(cut -d' ' -f1 /proc/loadavg)), tree $(du -sb "$tree/src" | cut -f1) bytes in $(find "$tree/src" -type f | wc -l) files, s3s-fs on $endpoint"
printf '%-36s %9s %12s %14s\n' method seconds 'peak RSS MB' 'bytes stored'
for m in rel-gzip rel-zstd rel-none old-a old-b tar-read; do
  printf '%-36s %9.2f %12.1f %14s\n' "$(label "$m")" "${secs[$m]}" "$(awk -v k="${rss[$m]}" 'BEGIN { print k / 1024 }')" "${bytes[$m]:--}"
done
r=rel-gzip
for m in rel-gzip rel-zstd rel-none; do
  printf '%s reports %ss of its own (%s compressed bytes from %s tar bytes)\n' "$(label "$m")" \
    "$(jq -r .seconds "$run/$m.out")" "$(jq -r .size "$run/$m.out")" "$(jq -r .tar_size "$run/$m.out")"
done
echo "breakdown: reading the tree takes ${secs[tar-read]}s of release's ${secs[$r]}s" \
  "($(awk -v a="${secs[tar-read]}" -v b="${secs[$r]}" 'BEGIN { printf "%.0f", 100 * a / b }')%)"
# Rejected headers (e.g. the SDK's default CRC32 checksums) would show up here first.
tail -n +"$((probe_lines + 1))" "$run/s3s-fs.log" >"$run/s3s-fs.bench.log"
echo "s3s-fs logged $(grep -c ERROR "$run/s3s-fs.bench.log" || true) error(s) during the methods"
grep -m 3 -A 1 ERROR "$run/s3s-fs.bench.log" || true
echo
verdict() { # DESCRIPTION VALUE AWK-CONDITION-ON-v
  local ok=FAIL
  if awk -v v="$2" "BEGIN { exit !($3) }"; then ok=PASS; fi
  printf '%-4s %-58s %s\n' "$ok" "$1" "$2"
}
echo "targets (release build, default settings):"
verdict "faster than old B (time B / time release > 1)" \
  "$(awk -v a="${secs[old-b]}" -v b="${secs[$r]}" 'BEGIN { printf "%.2fx", a / b }')" 'v + 0 > 1'
verdict "stores at most 1/3 of old B's bytes (release / B <= 0.333)" \
  "$(awk -v a="${bytes[$r]}" -v b="${bytes[old-b]}" 'BEGIN { printf "%.3f", a / b }')" 'v + 0 <= 1 / 3'
verdict "at least 3x faster than old A (time A / time release >= 3)" \
  "$(awk -v a="${secs[old-a]}" -v b="${secs[$r]}" 'BEGIN { printf "%.2fx", a / b }')" 'v + 0 >= 3'
verdict "peak RSS under 150 MB" \
  "$(awk -v k="${rss[$r]}" 'BEGIN { printf "%.1f MB", k / 1024 }')" 'v + 0 < 150'
