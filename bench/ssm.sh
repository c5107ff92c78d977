#!/usr/bin/env bash
# Benchmark of issue 12: `release push --via ssm` to 100 and 500 simulated instances, and
# `release status` of 1,000 from the bucket. The world is the SSM stand-in of the tests
# (tests/it/fixtures/ssm_standin.py: moto's server, S3 and Auto Scaling included, with Run
# Command made real), so every instance is a directory on tmpfs and its "agent" runs the real
# `release install` there. Prints the controller's CPU seconds and peak RSS, the AWS requests by
# kind, and the wall time against the floor: the same installs run by the hosts alone (xargs,
# the same number at once), with no controller. Exits 0 after the PASS/FAIL lines, non-zero if a
# step fails. Knobs and caveats: bench/README.md.
set -euo pipefail
source "$(dirname "$0")/common.sh"
group_size=${BENCH_SSM_GROUP:-125} # instances per group: the push goes to 4 groups
batch=${BENCH_SSM_BATCH:-50}       # --batch of both pushes: the same batch, more instances
small=${BENCH_SSM_SMALL:-100}      # the small push, for "RSS flat in the number of instances"
moto_server=${MOTO_SERVER:-$HOME/.cache/release-venv/bin/moto_server}
py=$(dirname "$moto_server")/python
[ -x "$py" ] || { log "no Python next to $moto_server: pip install 'moto[server]' into a venv"; exit 1; }
if [ ! -x /usr/bin/time ]; then log "installing GNU time"; apt-get update -qq && apt-get install -y -qq time >/dev/null; fi

make_run_dir
build_release

# --- The stand-in, alone on loopback, with private credentials and no metadata service.
port=$(free_port) endpoint=http://127.0.0.1:$port
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE
export AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=$endpoint
export AWS_CONFIG_FILE=$run/aws-config AWS_SHARED_CREDENTIALS_FILE=$run/aws-credentials
: >"$AWS_CONFIG_FILE" && : >"$AWS_SHARED_CREDENTIALS_FILE"
export GIT_COMMIT=0123456789abcdef0123456789abcdef01234567 SOURCE_DATE_EPOCH=1700000000
export GIT_BRANCH=bench BUILD_NUMBER=1 BUILD_TIMESTAMP=2024-01-01T00:00:00Z
requests=$run/requests.jsonl instances=$run/instances.json
echo '{"instances": {}}' >"$instances"
"$py" "$repo/tests/it/fixtures/ssm_standin.py" --host 127.0.0.1 --port "$port" \
  --instances "$instances" --requests "$requests" >"$run/standin.log" 2>&1 &
standin=$!; on_exit 'kill $standin 2>/dev/null; wait $standin 2>/dev/null'
for _ in $(seq 300); do # at most ~30 s: moto imports a lot
  curl -s -o /dev/null --max-time 0.1 "$endpoint/" && break
  kill -0 "$standin" 2>/dev/null || { cat "$run/standin.log" >&2; exit 1; }
  sleep 0.1
done

# --- Groups: s1 (the small push), p1-p4 (the push of 4 x group_size), q1-q4 (the floor's
# instances); status reads all of p and q.
bucket=bench
log "creating $((small + 8 * group_size)) instances in moto"
"$py" "$here/ssm_world.py" "$endpoint" "$bucket" "$shm/hosts" "$instances" "s1:$small" \
  p{1..4}":$group_size" q{1..4}":$group_size" >"$run/groups.txt"
ids_of() { awk -v g="$1" '$1 == g { $1 = ""; print }' "$run/groups.txt"; }

# --- A small build, promoted.
mkdir -p "$run/ws/app" && echo 1 >"$run/ws/app/version.txt"
rel=("$bin" -q --artifact "$artifact" --bucket "$bucket")
(cd "$run/ws" && "${rel[@]}" build app >/dev/null && "${rel[@]}" promote 1 --no-tag >/dev/null)

# --- Requests by kind between two points of the stand-in's log: the controller signs with key
# `test`, the instances with `instance` (bench/ssm_world.py).
mark() { wc -l <"$requests"; }
kinds() { # FROM TO KEY: "Action=count ..." of KEY's lines FROM+1..TO, most frequent first
  sed -n "$(($1 + 1)),$2p" "$requests" | jq -r --arg k "$3" 'select(.key == $k) | .action' |
    sort | uniq -c | sort -rn | awk '{ printf "%s%s=%s", (NR > 1 ? " " : ""), $2, $1 }'
}
count() { # ACTION FROM TO KEY
  sed -n "$(($2 + 1)),$3p" "$requests" | jq -r --arg k "$4" 'select(.key == $k) | .action' |
    grep -cx "$1" || true
}
total() { sed -n "$(($1 + 1)),$2p" "$requests" | jq -r --arg k "$3" 'select(.key == $k) | .action' | wc -l; }

push() { # KEY GROUP...
  local key=$1 from; shift
  local asg=(); for g in "$@"; do asg+=(--asg "$g"); done
  from=$(mark)
  timed "$key" "${rel[@]}" --output json push --via ssm "${asg[@]}" --batch "$batch" --remote-binary "$bin"
  req_from[$key]=$from req_to[$key]=$(mark)
  jq -e '.ok == (.hosts | length)' "$run/$key.out" >/dev/null || { log "$key: not every host ok"; exit 1; }
}
declare -A req_from req_to
log "push --via ssm to $small instances"; push small s1
log "push --via ssm to $((4 * group_size)) instances"; push large p1 p2 p3 p4

# --- The floor: the same installs on q1-q4 by the hosts alone, in batches of the same size, with
# the environment the stand-in gives them.
"$py" - "$instances" "$bin" "$artifact" "$bucket" >"$run/floor.lines" <<'EOF'
import json, shlex, sys
world, binary, artifact, bucket = sys.argv[1:]
for instance, spec in json.load(open(world))["instances"].items():
    env = " ".join(shlex.quote(f"{k}={v}") for k, v in spec["env"].items())
    print(f"cd {shlex.quote(spec['cwd'])} && env -i {env} {shlex.quote(binary)} install 1 "
          f"--artifact {artifact} --bucket {bucket} --host-id {instance} --output json >/dev/null")
EOF
for g in q1 q2 q3 q4; do # the floor's instances in push order, made before the clock starts
  for id in $(ids_of "$g"); do grep -F -- "--host-id $id " "$run/floor.lines"; done
done | split -l "$batch" -d -a 3 - "$run/floor-batch-"
floor_run() { # a batch at a time, all of a batch at once, as the stand-in runs a SendCommand
  local f
  for f in "$run"/floor-batch-*; do xargs -d '\n' -P "$batch" -n 1 bash -c <"$f"; done
}
export -f floor_run && export run batch
log "the floor: the same installs by the hosts alone"
timed floor bash -c floor_run

log "status of $((8 * group_size)) instances from the bucket"
from=$(mark)
timed status "${rel[@]}" --output json status --asg p1 --asg p2 --asg p3 --asg p4 \
  --asg q1 --asg q2 --asg q3 --asg q4
req_from[status]=$from req_to[status]=$(mark)
jq -e --argjson n $((8 * group_size)) '[.hosts[] | select(.state == "stable")] | length == $n' \
  "$run/status.out" >/dev/null || { log "status: not every instance on stable"; exit 1; }

# --- Figures.
row() { printf '%-34s %7s %6s %7s  %s\n' "$@"; }
cpu_of() { awk -v u="${usr[$1]}" -v s="${sys[$1]}" 'BEGIN { print u + s }'; }
row "" "wall s" "CPU s" "RSS MB" "AWS requests by kind"
for key in small large status; do
  case $key in small) label="push --via ssm, $small instances" ;;
    large) label="push --via ssm, $((4 * group_size)) instances" ;;
    status) label="status, $((8 * group_size)) instances" ;; esac
  row "$label" "${secs[$key]}" "$(cpu_of "$key")" \
    "$(awk -v r="${rss[$key]}" 'BEGIN { printf "%.1f", r / 1024 }')" \
    "controller: $(kinds "${req_from[$key]}" "${req_to[$key]}" test)"
  [ "$key" = status ] || row "" "" "" "" "instances: $(kinds "${req_from[$key]}" "${req_to[$key]}" instance)"
done
row "floor: hosts alone, $((4 * group_size)) installs" "${secs[floor]}" "" "" "(batches of $batch, xargs -P $batch)"
echo
large=$((4 * group_size)) batches=$(((4 * group_size + batch - 1) / batch))
verdict "controller CPU of the $large-instance push under 2 s" "$(cpu_of large)" 'v < 2'
verdict "peak RSS flat: $large vs $small instances, --batch $batch (ratio < 1.15)" \
  "$(awk -v a="${rss[large]}" -v b="${rss[small]}" 'BEGIN { printf "%.2f", a / b }')" 'v < 1.15'
sends=$(count SendCommand "${req_from[large]}" "${req_to[large]}" test)
verdict "SendCommand calls = batches x ceil($batch/50) = $((batches * ((batch + 49) / 50)))" "$sends" \
  "v == $((batches * ((batch + 49) / 50)))"
polls=$(count ListCommandInvocations "${req_from[large]}" "${req_to[large]}" test)
verdict "polls per batch (ListCommandInvocations / $batches batches) under 10" \
  "$(awk -v p="$polls" -v b="$batches" 'BEGIN { printf "%.1f", p / b }')" 'v < 10'
verdict "controller's AWS requests per instance (not x polls)" \
  "$(awk -v n="$(total "${req_from[large]}" "${req_to[large]}" test)" -v i="$large" 'BEGIN { printf "%.2f", n / i }')" 'v < 0.5'
verdict "status of $((8 * group_size)) instances under 3 s" "${secs[status]}" 'v < 3'
gets=$(count GetObject "${req_from[status]}" "${req_to[status]}" test)
verdict "status: no GET per host (GetObject calls)" "$gets" 'v <= 2'
printf '%-4s %-62s %s\n' "" "push wall / hosts alone (polling and SSM's delivery cost)" \
  "$(awk -v a="${secs[large]}" -v b="${secs[floor]}" 'BEGIN { printf "%.2f", a / b }')"
