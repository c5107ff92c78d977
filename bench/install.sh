#!/usr/bin/env bash
# Benchmark of issue 4: `release install` (download, SHA-256 and size check, safe extraction,
# switch) against the old deploy step (`aws s3 cp` of the archive, then `tar xzf`), side by side
# in one run, with the install dir on tmpfs and on disk, against s3s-fs on loopback. Then where
# the time goes: download alone, gunzip alone, sha256 alone, tar from a local file, and
# `strace -c -f` of one install. Every timed row runs BENCH_RUNS times (default 3), interleaved;
# the table shows the median and the range. Exits 0 after printing the PASS/FAIL lines,
# non-zero if a step fails. Knobs and caveats: bench/README.md.
set -euo pipefail
source "$(dirname "$0")/common.sh"

need_tools
make_run_dir
build_release
ensure_tree
start_s3
disk=$run/disk # the scratch dir is on the same disk as the cache: the "on disk" rows
mkdir -p "$disk"

# --- One build of the whole tree (a few hundred MB), made by `release build`: both ways
# install exactly these bytes.
bucket=install
mkdir "$run/s3/$bucket"
log "release build of $(du -sh "$tree/src" | cut -f1) into s3s-fs"
(cd "$tree" && "$bin" -q --artifact "$artifact" --bucket "$bucket" --output json build src) >"$run/build.json"
url=$(jq -r .object "$run/build.json") # s3://install/bench/prod/bench-1.tar.gz
archive_bytes=$(jq -r .size "$run/build.json")
# A local copy (on tmpfs, so reading it costs nothing) for the stage-by-stage rows; the first
# download also puts the object in s3s-fs's page cache, where every timed download finds it.
aws s3 cp --only-show-errors "$url" "$shm/local.tar.gz"
local_gz=$shm/local.tar.gz

# --- Methods. Each run gets its own new directory, and `sync` first, so one row's dirty pages
# are not written back during the next. Nothing is deleted on disk before the end: this disk's
# ext4 has no journal, and then each new file skips over every inode freed in the last 1-6
# minutes (ext4's recently_deleted()), which made creating a file after an `rm -rf` of the last
# run cost ~0.8 ms of kernel time (README). tmpfs dirs go at once, to give the memory back.
fresh() { # BASE KEY: sets $d, a new empty dir on BASE's medium
  rm -rf "$shm/run"; d=$1/run/${2/\#/-}; mkdir -p "$d/d"; sync
}
declare -A files
count() { find "$1" -type f | wc -l; }
rel() { # BASE KEY
  fresh "$1" "$2"
  timed "$2" "$bin" -q --artifact "$artifact" --bucket "$bucket" --output json install 1 --dir "$d/d"
  files[${2%#*}]=$(jq -r .files "$run/$2.out")
}
# The old deploy streamed, or (as the old deploy script did) downloaded to a file first.
old_pipe() { fresh "$1" "$2"; timed "$2" bash -o pipefail -c 'aws s3 cp --only-show-errors "$1" - | tar xzf - -C "$2"' _ "$url" "$d/d"; files[${2%#*}]=$(count "$d/d"); }
old_file() { fresh "$1" "$2"; timed "$2" bash -c 'aws s3 cp --only-show-errors "$1" "$2/x.tar.gz" && tar xzf "$2/x.tar.gz" -C "$2/d"' _ "$url" "$d"; files[${2%#*}]=$(count "$d/d"); }
untar() { fresh "$1" "$2"; timed "$2" tar xzf "$local_gz" -C "$d/d"; files[${2%#*}]=$(count "$d/d"); }

for ((i = 1; i <= runs; i++)); do
  log "round $i of $runs"
  for m in shm disk; do
    [ $m = shm ] && base=$shm || base=$disk
    rel "$base" "rel-$m#$i"
    old_pipe "$base" "pipe-$m#$i"
    old_file "$base" "file-$m#$i"
    untar "$base" "untar-$m#$i"
  done
  # Stages alone: download (no disk), decompress, hash.
  timed "dl#$i" bash -c 'aws s3 cp --only-show-errors "$1" - >/dev/null' _ "$url"
  timed "gunzip#$i" bash -c 'gzip -dc "$1" >/dev/null' _ "$local_gz"
  timed "sha256#$i" sha256sum "$local_gz"
done
# Syscalls of one install on disk: counts are exact, times inflated by strace itself.
log "strace -c -f of one release install on disk"
fresh "$disk" strace
strace -c -f -o "$run/strace.txt" "$bin" -q --artifact "$artifact" --bucket "$bucket" install 1 --dir "$d/d" >/dev/null
rm -rf "$shm/run"

# --- Report.
label() {
  case $1 in
    rel) echo "release install 1 --dir D" ;; pipe) echo "old: aws s3 cp - | tar xzf -" ;;
    file) echo "old: aws s3 cp file; tar xzf file" ;; untar) echo "stage: tar xzf local file" ;;
    dl) echo "stage: aws s3 cp - >/dev/null" ;; gunzip) echo "stage: gzip -dc >/dev/null" ;;
    sha256) echo "stage: sha256sum" ;;
  esac
}
tree_files=$(find "$tree/src" -type f | wc -l)
echo
echo "release install benchmark: $(nproc) CPUs (1-min load now $(cut -d' ' -f1 /proc/loadavg)), $runs runs per row, interleaved"
echo "archive: $archive_bytes bytes (gzip) of $(du -sb "$tree/src" | cut -f1) bytes in $tree_files files; s3s-fs on $endpoint"
echo "seconds: median (min-max) of $runs; user/system: medians; peak RSS: largest process (GNU time %M)"
printf '%-36s %-6s %-20s %7s %7s %8s %7s\n' method dir seconds user system 'RSS MB' files
for m in rel pipe file untar dl gunzip sha256; do
  for medium in shm disk -; do
    k=$m-$medium; [ "$medium" = - ] && k=$m
    [ -n "${secs[$k#1]:-}" ] || continue
    printf '%-36s %-6s %-20s %7.2f %7.2f %8.1f %7s\n' "$(label "$m")" "${medium/shm/tmpfs}" "$(range secs "$k")" \
      "$(median usr "$k")" "$(median sys "$k")" "$(awk -v k="$(median rss "$k")" 'BEGIN { print k / 1024 }')" "${files[$k]:--}"
  done
done
echo
echo "release's own JSON seconds (last run): tmpfs $(jq -r .seconds "$run/rel-shm#$runs.out"), disk $(jq -r .seconds "$run/rel-disk#$runs.out")"
echo "strace -c -f of one release install on disk (top syscalls by time; strace slows it):"
awk '/^-/ { d++; next } d == 1 && NF >= 5 { print }' "$run/strace.txt" | sort -k2 -gr | head -6 |
  awk '{ printf "  %-14s %9s s %8s calls %s errors\n", $NF, $2, $4, (NF == 6 ? $5 : 0) }'
# Far above 0.1 ms per file on disk: ext4's recently-deleted-inode scan, not the tools (README).
per_file() { awk -v s="$(median sys "$1")" -v f="${files[$1]}" 'BEGIN { printf "%.2f", 1000 * s / f }'; }
echo "kernel (system) ms per file: release tmpfs $(per_file rel-shm), disk $(per_file rel-disk); tar xzf tmpfs $(per_file untar-shm), disk $(per_file untar-disk)"
# Which stage dominates: each measured alone; file creation is tar's system time (its gzip is
# a second process), and release runs on about one core when its CPU seconds match its wall time.
{ echo "$(median secs dl) download"; echo "$(median secs gunzip) gunzip"; echo "$(median secs sha256) sha256"
  echo "$(median sys untar-shm) create-files-tmpfs"; echo "$(median sys untar-disk) create-files-disk"; } |
  sort -gr | awk 'BEGIN { printf "stages alone, largest first (s):" } { printf " %s %s", $2, $1 } END { print "" }'
for m in shm disk; do
  echo "release on ${m/shm/tmpfs}: wall $(median secs "rel-$m") s, CPU $(awk -v u="$(median usr "rel-$m")" -v s="$(median sys "rel-$m")" 'BEGIN { print u + s }') s"
done
echo
best_old() { awk -v a="$(median secs "pipe-$1")" -v b="$(median secs "file-$1")" 'BEGIN { print (a < b ? a : b) }'; }
ratio() { awk -v a="$(best_old "$1")" -v b="$(median secs "rel-$1")" 'BEGIN { printf "%.2fx", a / b }'; }
echo "targets (medians; ratio = faster old way / release; > 1 means release is faster):"
verdict "tmpfs: release install not slower than the old way" "$(ratio shm)" 'v + 0 >= 1'
verdict "disk: release install not slower than the old way" "$(ratio disk)" 'v + 0 >= 1'
verdict "same files as tar xzf (tmpfs / disk)" "${files[rel-shm]}/${files[pipe-shm]} ${files[rel-disk]}/${files[pipe-disk]}" \
  "${files[rel-shm]} == ${files[pipe-shm]} && ${files[rel-disk]} == ${files[pipe-disk]}"
