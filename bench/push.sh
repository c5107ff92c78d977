#!/usr/bin/env bash
# Benchmark of issue 5: `release push` of a real build to 1, 4 and 16 hosts against
# ansible-playbook (forks 1 / 4 / 16) running the old deploy path (`aws s3 cp` + `tar xzf`) on the
# same hosts, side by side in one run. Hosts: one sshd per address 127.0.1.x on one port, each
# with its own HOME and install dir on tmpfs (on one shared disk the hosts' file creation would
# serialize and hide both tools); S3 is s3s-fs on loopback for both. Every row runs BENCH_RUNS
# times (default 3), interleaved. Exits 0 after printing the PASS/FAIL lines, non-zero if a
# step fails. Knobs, the overhead's definition and caveats: bench/README.md.
set -euo pipefail
source "$(dirname "$0")/common.sh"
read -r -a counts <<<"${BENCH_HOSTS:-1 4 16}" # host counts, ascending; 1: no contention
push_mb=${BENCH_PUSH_MB:-40}
kex=${BENCH_KEX-curve25519-sha256} # empty: OpenSSH's default (post-quantum) key exchange

need_tools
ansible=$cache/ansible/bin/ansible-playbook
if [ ! -x "$ansible" ]; then
  log "installing ansible-core into $cache/ansible"
  python3 -m venv "$cache/ansible" && "$cache/ansible/bin/pip" install --quiet ansible-core
fi
make_run_dir
build_release
ensure_tree
start_s3

# --- The build: whole crates of the tree, in name order, skipping any that would take the total
# past BENCH_PUSH_MB (a real, deterministic source tree of tens of MB).
crates=() total=0
while read -r kb path; do
  if ((total + kb <= push_mb * 1024)); then crates+=("${path#"$tree"/}"); total=$((total + kb)); fi
done < <(du -sk "$tree"/src/*/* | sort -k2)
bucket=push
mkdir "$run/s3/$bucket"
log "release build of ${#crates[@]} crates, $((total / 1024)) MB"
(cd "$tree" && "$bin" -q --artifact "$artifact" --bucket "$bucket" --output json build "${crates[@]}") >"$run/build.json"
key=$(jq -r .object "$run/build.json") && key=${key#"s3://$bucket/"}

# --- Hosts, as tests/it/common/hosts.rs makes them: generated keys, key-only root login, the
# whole environment on ONE SetEnv line (sshd only honours the first).
addrs=()
for ((h = 0; h < counts[-1]; h++)); do addrs+=("127.0.1.$((10 + h))"); done
hosts=$shm/hosts keys=$shm/keys
mkdir -p "$keys" && install -d -m 0755 /run/sshd # a root sshd refuses to start without it
ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$keys/host"
ssh-keygen -q -t ed25519 -N '' -C bench-user -f "$keys/user"
cp "$keys/user.pub" "$keys/authorized_keys"
port_free() { python3 -c 'import socket, sys
for a in sys.argv[2:]: socket.socket().bind((a, int(sys.argv[1])))' "$@" 2>/dev/null; }
for _ in $(seq 20); do port=$((20000 + RANDOM % 12000)); port_free "$port" "${addrs[@]}" && break; done
sshd_pids=()
on_exit 'for p in "${sshd_pids[@]}"; do kill $p 2>/dev/null; wait $p 2>/dev/null; done'
for a in "${addrs[@]}"; do
  d=$hosts/$a && mkdir -p "$d/home" "$d/install"
  cat >"$d/sshd_config" <<EOF
ListenAddress $a:$port
HostKey $keys/host
AuthorizedKeysFile $keys/authorized_keys
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 200
MaxSessions 100
SetEnv "RELEASE_INSTALL_DIR=$d/install" "HOME=$d/home" "PATH=$run/bin:$aws_dir:/usr/bin:/bin" "LANG=C.UTF-8" "AWS_EC2_METADATA_DISABLED=true" "AWS_ACCESS_KEY_ID=test" "AWS_SECRET_ACCESS_KEY=test" "AWS_REGION=us-east-1" "AWS_DEFAULT_REGION=us-east-1" "AWS_ENDPOINT_URL=$endpoint" "AWS_ENDPOINT_URL_S3=$endpoint" "AWS_CONFIG_FILE=$AWS_CONFIG_FILE" "AWS_SHARED_CREDENTIALS_FILE=$AWS_SHARED_CREDENTIALS_FILE"
EOF
  /usr/sbin/sshd -D -e -f "$d/sshd_config" </dev/null >"$d/sshd.log" 2>&1 &
  sshd_pids+=($!)
  echo "[$a]:$port $(cut -d' ' -f1-2 "$keys/host.pub")" >>"$keys/known_hosts"
done
for a in "${addrs[@]}"; do # each sshd's own "listening" line proves the port is ours; ~20 s at most
  for _ in $(seq 200); do grep -q "Server listening on $a port $port" "$hosts/$a/sshd.log" && break; sleep 0.1; done
  grep -q "Server listening on $a port $port" "$hosts/$a/sshd.log" || { cat "$hosts/$a/sshd.log" >&2; exit 1; }
done
# One client config for BOTH tools. Loopback only: a name with a letter, - or _ is not an
# address, and any destination outside 127.* goes to ProxyCommand /bin/false.
not_names=$(printf ' !*%s*' {a..z} - _)
cfg=$run/ssh_config
cat >"$cfg" <<EOF
Host 127.*$not_names
  User root
  Port $port
  IdentityFile $keys/user
  IdentitiesOnly yes
  UserKnownHostsFile $keys/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  BatchMode yes
  ConnectTimeout 5
${kex:+  KexAlgorithms $kex}
  ProxyCommand none
Host *
  ProxyCommand /bin/false
EOF
ssh -F "$cfg" -- "${addrs[0]}" 'command -v release aws >/dev/null' || { log "hosts cannot find release and aws"; exit 1; }

# --- Ansible: the old push job's playbook, pull + untar, with the same hosts, key and config.
# Pipelining on and facts off make Ansible faster than the old job ran it (kind to Ansible).
cat >"$run/deploy.yml" <<'EOF'
- hosts: all
  gather_facts: false
  tasks:
    - name: download the build (the old deploy script's aws s3 cp)
      shell: aws s3 cp --only-show-errors "s3://{{ bucket }}/{{ key }}" "$HOME/x.tar.gz"
    - name: unpack it into the host's dir
      shell: mkdir -p "$RELEASE_INSTALL_DIR/old" && tar xzf "$HOME/x.tar.gz" -C "$RELEASE_INSTALL_DIR/old"
EOF
# The same tasks as Ansible runs a playbook that says nothing (facts gathered, no pipelining), as
# an old job may well have run it: for reading only, the targets are checked against the above.
sed '/gather_facts: false/d' "$run/deploy.yml" >"$run/deploy-defaults.yml"
ansible_defaults=${BENCH_ANSIBLE_DEFAULTS:-1}
export ANSIBLE_HOME=$run/ansible ANSIBLE_PIPELINING=True ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=False
export ANSIBLE_SSH_CONTROL_PATH_DIR=$shm/cp ANSIBLE_LOCAL_TEMP=$run/ansible/tmp
for n in "${counts[@]}"; do
  { echo '[all]'; printf '%s\n' "${addrs[@]:0:n}"; echo '[all:vars]'
    printf '%s\n' ansible_user=root "ansible_port=$port" ansible_python_interpreter=/usr/bin/python3 \
      "ansible_ssh_common_args='-F $cfg'"; } >"$run/inventory-$n"
done
# Ansible's control masters outlive a run by 60 s (ControlPersist); close them so the next
# run starts cold, like release's.
close_masters() { for s in "$shm"/cp/*; do [ -S "$s" ] && ssh -F "$cfg" -o ControlPath="$s" -O exit -- "${addrs[0]}" 2>/dev/null; done; return 0; }
on_exit close_masters
reset_hosts() { for a in "${addrs[@]}"; do rm -rf "$hosts/$a/install"/* "$hosts/$a/home/x.tar.gz"; done; }

# CPU spent on the hosts: each listening sshd's reaped children (the per-connection sshd, the
# shell, release or Python, aws, tar) add up in its cutime + cstime (/proc/PID/stat 16-17).
host_cpu() { for p in "${sshd_pids[@]:0:$1}"; do cat "/proc/$p/stat"; done | awk '{ t += $16 + $17 } END { print t }'; }
# And s3s-fs's own CPU (utime + stime, fields 14-15): it serves both tools from the same cores.
s3_cpu() { awk '{ print $14 + $15 }' "/proc/$s3pid/stat"; }
declare -A hcpu scpu inst ovh
timed_hosts() { # KEY N CMD...: timed, plus the hosts' and s3s-fs's CPU seconds in hcpu/scpu[KEY]
  local key=$1 n=$2 before s3_before p; shift 2
  reset_hosts; before=$(host_cpu "$n") s3_before=$(s3_cpu)
  timed "$key" "$@"
  close_masters # Ansible's connections end (and their CPU is counted) only when its masters exit
  for p in "${sshd_pids[@]:0:n}"; do # until every connection's sshd is reaped: ~5 s at most
    for _ in $(seq 50); do pgrep -P "$p" >/dev/null || break; sleep 0.1; done
  done
  hcpu[$key]=$(awk -v a="$before" -v b="$(host_cpu "$n")" -v hz="$(getconf CLK_TCK)" 'BEGIN { print (b - a) / hz }')
  scpu[$key]=$(awk -v a="$s3_before" -v b="$(s3_cpu)" -v hz="$(getconf CLK_TCK)" 'BEGIN { print (b - a) / hz }')
}
# The old deploy script over plain ssh, all hosts at once: Ansible's own share is the difference.
old_script="set -o pipefail; mkdir -p \"\$RELEASE_INSTALL_DIR/old\" && aws s3 cp --only-show-errors s3://$bucket/$key - | tar xzf - -C \"\$RELEASE_INSTALL_DIR/old\""

# release_push ROW ROUND N [FLAGS]: one push to the first N hosts, checked, with the per-host
# install seconds (inst) and the overhead (ovh) derived from it.
release_push() {
  local row=$1 i=$2 n=$3 a list; shift 3
  list=$(IFS=,; echo "${addrs[*]:0:n}")
  timed_hosts "$row#$i" "$n" "$bin" -q --artifact "$artifact" --bucket "$bucket" --output json push 1 --hosts "$list" \
    --ssh-config "$cfg" --ssh-port "$port" --ssh-user root --batch 100% --log-dir "$run/logs-$row-$i" "$@"
  for a in "${addrs[@]:0:n}"; do [ "$(readlink "$hosts/$a/install/current")" = releases/1 ] || { log "$a: not on build 1"; exit 1; }; done
  # Each host's log ends with its `release install --output json`: the install's own seconds.
  for a in "${addrs[@]:0:n}"; do sed -n '/^{/,$p' "$run/logs-$row-$i/$a.log" | jq -r .seconds; done >"$run/inst-$row-$i"
  inst[$row#$i]=$(awk '{ s += $1 } END { printf "%.3f", s / NR }' "$run/inst-$row-$i")
  # The hosts of a batch run at once (--batch 100%: one batch), so what release adds beyond
  # the install is the push's wall time minus the mean install time, once per batch.
  ovh[$row#$i]=$(awk -v w="${secs[$row#$i]}" -v m="${inst[$row#$i]}" -v b="$(jq .batches "$run/$row#$i.out")" 'BEGIN { printf "%.3f", (w - m) / b }')
  jq -r '.hosts[] | "\(.host) \(.seconds)"' "$run/$row#$i.out" >"$run/hostsecs-$row-$i"
}

# --- The runs: per round and host count, release, Ansible, the plain-ssh script.
for ((i = 1; i <= runs; i++)); do
  for n in "${counts[@]}"; do
    # The floor under every method: one plain ssh connection per host running `true`, all
    # hosts at once (their handshakes share the 2 cores as the pushes' do).
    printf '%s\n' "${addrs[@]:0:n}" >"$run/hosts-$n"
    timed_hosts "ssh-$n#$i" "$n" xargs -a "$run/hosts-$n" -P "$n" -I{} ssh -F "$cfg" -- {} true
    log "round $i of $runs: $n hosts, release push"
    release_push "rel-$n" "$i" "$n"
    # With more hosts than release's default cap on new connections (8), also without the cap.
    ((n <= 8)) || release_push "relmc-$n" "$i" "$n" --max-connections "$n"
    log "round $i of $runs: $n hosts, ansible-playbook -f $n"
    timed_hosts "ans-$n#$i" "$n" "$ansible" -i "$run/inventory-$n" -f "$n" "$run/deploy.yml" -e "bucket=$bucket key=$key"
    for a in "${addrs[@]:0:n}"; do [ -f "$hosts/$a/install/old/RELEASE" ] || { log "$a: ansible left no RELEASE"; exit 1; }; done
    if [ "$ansible_defaults" = 1 ]; then
      log "round $i of $runs: $n hosts, ansible-playbook -f $n with Ansible's defaults"
      timed_hosts "ansd-$n#$i" "$n" env ANSIBLE_PIPELINING=False "$ansible" -i "$run/inventory-$n" -f "$n" "$run/deploy-defaults.yml" -e "bucket=$bucket key=$key"
      for a in "${addrs[@]:0:n}"; do [ -f "$hosts/$a/install/old/RELEASE" ] || { log "$a: ansible left no RELEASE"; exit 1; }; done
    fi
    log "round $i of $runs: $n hosts, the old script over plain ssh"
    timed_hosts "raw-$n#$i" "$n" xargs -a "$run/hosts-$n" -P "$n" -I{} ssh -F "$cfg" -- {} "$old_script"
    for a in "${addrs[@]:0:n}"; do [ -f "$hosts/$a/install/old/RELEASE" ] || { log "$a: the script left no RELEASE"; exit 1; }; done
  done
done
reset_hosts

# --- Report.
cpu() { # KEY: medians of controller CPU (GNU time user + system), hosts' and s3s-fs's CPU, in seconds
  printf '%.2f %.2f %.2f' "$(awk -v u="$(median usr "$1")" -v s="$(median sys "$1")" 'BEGIN { print u + s }')" \
    "$(median hcpu "$1")" "$(median scpu "$1")"
}
echo
echo "release push benchmark: $(nproc) CPUs shared by controller, hosts and s3s-fs (1-min load now $(cut -d' ' -f1 /proc/loadavg)), $runs runs per row, interleaved"
echo "build: ${#crates[@]} crates, $(jq -r .tar_size "$run/build.json") tar bytes in $(sed -n '/^{/,$p' "$run/logs-rel-${counts[0]}-1/${addrs[0]}.log" | jq .files) files, $(jq -r .size "$run/build.json") gzip bytes; hosts on tmpfs; s3s-fs on $endpoint"
echo "ssh: KexAlgorithms ${kex:-(OpenSSH default, post-quantum)} for both tools (one shared -F config)"
echo "seconds: median (min-max) of $runs; CPU: medians of user + system, controller side / all hosts / s3s-fs"
printf '%-6s %-44s %-20s %-14s %-20s %-20s\n' hosts method seconds 'CPU s c/h/s3' 'mean install s' 'overhead s'
for n in "${counts[@]}"; do
  printf '%-6s %-44s %-20s %-14s %-20s %-20s\n' "$n" "release push --batch 100%" "$(range secs "rel-$n")" "$(cpu "rel-$n")" "$(range inst "rel-$n")" "$(range ovh "rel-$n")"
  [ -z "${secs[relmc-$n#1]:-}" ] || printf '%-6s %-44s %-20s %-14s %-20s %-20s\n' "$n" "  the same with --max-connections $n" \
    "$(range secs "relmc-$n")" "$(cpu "relmc-$n")" "$(range inst "relmc-$n")" "$(range ovh "relmc-$n")"
  printf '%-6s %-44s %-20s %-14s %-20s %-20s\n' "$n" "ansible-playbook -f $n (aws s3 cp + tar xzf)" "$(range secs "ans-$n")" "$(cpu "ans-$n")" - -
  [ -z "${secs[ansd-$n#1]:-}" ] || printf '%-6s %-44s %-20s %-14s %-20s %-20s\n' "$n" "  the same with facts, no pipelining (defaults)" \
    "$(range secs "ansd-$n")" "$(cpu "ansd-$n")" - -
  printf '%-6s %-44s %-20s %-14s %-20s %-20s\n' "$n" "same script over plain ssh (xargs -P $n)" "$(range secs "raw-$n")" "$(cpu "raw-$n")" - -
  printf '%-6s %-44s %-20s %-14s %-20s %-20s\n' "$n" "floor: ssh -F cfg host true (xargs -P $n)" "$(range secs "ssh-$n")" "$(cpu "ssh-$n")" - -
done
echo
echo "per-host view of the last release runs (seconds, mean over hosts):"
for n in "${counts[@]}"; do
  paste -d' ' "$run/hostsecs-rel-$n-$runs" "$run/inst-rel-$n-$runs" | awk -v n="$n" -v w="${secs[rel-$n#$runs]}" '
    { h += $2; i += $3; if ($2 > mx) mx = $2 }
    END { printf "  %2d hosts: host total %.3f = its install %.3f + ssh and remote start %.3f; push wall %.2f - slowest host %.2f = %.3f on the controller alone\n",
          n, h / NR, i / NR, (h - i) / NR, w, mx, w - mx }'
done
echo
echo "CPU budget (medians): all CPU measured (controller + hosts + s3s-fs) / $(nproc) cores, against the wall time:"
for n in "${counts[@]}"; do
  for row in rel ans; do
    awk -v n="$n" -v row="$row" -v c="$(awk -v u="$(median usr "$row-$n")" -v s="$(median sys "$row-$n")" 'BEGIN { print u + s }')" \
      -v h="$(median hcpu "$row-$n")" -v s3="$(median scpu "$row-$n")" -v w="$(median secs "$row-$n")" -v cores="$(nproc)" \
      'BEGIN { printf "  %2d hosts, %-7s: (%.2f + %.2f + %.2f) / %d = %.2f s of CPU per core, wall %.2f s\n",
               n, row == "rel" ? "release" : "ansible", c, h, s3, cores, (c + h + s3) / cores, w }'
  done
done
echo
ratio() { awk -v a="$(median secs "ans-$1")" -v b="$(median secs "rel-$1")" 'BEGIN { printf "%.1fx", a / b }'; }
echo "targets (medians):"
for n in "${counts[@]}"; do
  verdict "$n hosts: release at least 10x faster than Ansible" "$(ratio "$n")" 'v + 0 >= 10'
done
for n in "${counts[@]}"; do
  verdict "$n hosts: overhead beyond the install under 150 ms" "$(printf '%.3fs' "$(median ovh "rel-$n")")" 'v + 0 < 0.150'
done
if [ "$ansible_defaults" = 1 ]; then
  echo "against ansible-playbook with Ansible's defaults (facts, no pipelining), for reading only:"
  for n in "${counts[@]}"; do
    printf '  %2d hosts: %s\n' "$n" "$(awk -v a="$(median secs "ansd-$n")" -v b="$(median secs "rel-$n")" 'BEGIN { printf "%.1fx", a / b }')"
  done
fi
echo "the overhead less OpenSSH's own floor (bare connections to as many hosts at once), for reading only:"
for n in "${counts[@]}"; do
  printf '  %2d hosts: %.3fs - %.3fs = %.3fs\n' "$n" "$(median ovh "rel-$n")" "$(median secs "ssh-$n")" \
    "$(awk -v o="$(median ovh "rel-$n")" -v f="$(median secs "ssh-$n")" 'BEGIN { print o - f }')"
done
