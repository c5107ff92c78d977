#!/usr/bin/env bash
# Benchmark of issue 2: `release build` against the old Jenkins build job (`tar czf` or `tar cf`,
# then `aws s3 cp` twice), side by side in one run, against s3s-fs on loopback so the S3 server
# is not the bottleneck. Prints wall time, peak RSS and bytes stored, then the issue's targets
# as PASS/FAIL. Exits 0 after printing whatever the verdicts; non-zero if a step fails.
# Knobs and caveats: bench/README.md.
set -euo pipefail

source "$(dirname "$0")/common.sh" # tools, the frozen tree, s3s-fs, the AWS environment
need_tools
make_run_dir
build_release
ensure_tree
dirs=(src) # the PATHs given to every method, relative to $tree
start_s3
probe_lines=$(wc -l <"$run/s3s-fs.log") # the unsigned readiness probes are logged as AccessDenied

# --- Methods. Each gets its own bucket (a directory in s3s-fs's root) so bytes are per method.
declare -A bytes
cd "$tree" # common.sh's `timed` runs in the current directory; the PATHs are relative to it
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
