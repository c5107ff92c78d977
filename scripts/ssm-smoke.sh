#!/usr/bin/env bash
# Smoke test of `release push --via ssm` and `release status` against a REAL AWS account.
#
# It pushes the artifact's latest-stable build to every instance of one Auto Scaling Group over
# Systems Manager Run Command, then reads the group's status from the bucket and checks that
# every instance is on stable. It CHANGES those instances (it installs a build on them), so it
# refuses to run without --i-mean-it and without AWS credentials. The test suite never runs it:
# it proves what the SSM stand-in of the tests cannot (docs/ssm.md, docs/decisions.md).
#
#   scripts/ssm-smoke.sh --i-mean-it --asg GROUP --bucket BUCKET --artifact ARTIFACT \
#       --ssm-output s3://LOG-BUCKET/PREFIX [--stage prod] [--region eu-west-1] \
#       [--release /path/to/release] [--health-command 'curl -fsS http://127.0.0.1/health']
#
# Exit status: 0 every instance on stable; 1 the push or the check failed; 2 usage, missing
# credentials or tools (nothing was run).
set -euo pipefail

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

die() {
    echo "ssm-smoke: $*" >&2
    exit 2
}

mean_it=false
group=''
bucket=''
artifact=''
ssm_output=''
stage=prod
region=''
release_bin=release
health_command=''

while [ "$#" -gt 0 ]; do
    case "$1" in
        --i-mean-it) mean_it=true; shift; continue ;;
        -h | --help) usage ;;
    esac
    [ "$#" -ge 2 ] || die "$1 needs a value (--help for usage)"
    case "$1" in
        --asg) group=$2 ;;
        --bucket) bucket=$2 ;;
        --artifact) artifact=$2 ;;
        --ssm-output) ssm_output=$2 ;;
        --stage) stage=$2 ;;
        --region) region=$2 ;;
        --release) release_bin=$2 ;;
        --health-command) health_command=$2 ;;
        *) die "unknown argument '$1' (--help for usage)" ;;
    esac
    shift 2
done

[ "$mean_it" = true ] || die "this pushes a build to real instances of a real account; add --i-mean-it if that is what you want"
[ -n "$group" ] || die "give --asg GROUP"
[ -n "$bucket" ] || die "give --bucket BUCKET"
[ -n "$artifact" ] || die "give --artifact ARTIFACT"
case "$ssm_output" in
    s3://?*) ;;
    *) die "give --ssm-output s3://BUCKET/PREFIX (where Run Command keeps each host's full output)" ;;
esac
command -v "$release_bin" >/dev/null 2>&1 || die "no '$release_bin' on PATH: give --release /path/to/release"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to read release's JSON"

# A real account, not a local stand-in: refuse endpoint overrides and disabled credentials.
for variable in AWS_ENDPOINT_URL AWS_ENDPOINT_URL_SSM AWS_ENDPOINT_URL_S3 AWS_ENDPOINT_URL_AUTO_SCALING; do
    if [ -n "${!variable:-}" ]; then
        die "$variable is set (${!variable}): this script is for a real AWS account; unset it"
    fi
done

# Credentials: ask STS when the AWS CLI is there, else look for the usual sources.
region_args=()
if [ -n "$region" ]; then
    region_args=(--region "$region")
fi
if command -v aws >/dev/null 2>&1; then
    identity=$(aws sts get-caller-identity --query Arn --output text "${region_args[@]}" 2>&1) ||
        die "no usable AWS credentials (aws sts get-caller-identity: $identity)"
    echo "ssm-smoke: AWS identity: $identity"
elif [ -z "${AWS_ACCESS_KEY_ID:-}${AWS_PROFILE:-}${AWS_WEB_IDENTITY_TOKEN_FILE:-}${AWS_CONTAINER_CREDENTIALS_FULL_URI:-}${AWS_CONTAINER_CREDENTIALS_RELATIVE_URI:-}" ] &&
    [ ! -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ] &&
    [ ! -f "${AWS_CONFIG_FILE:-$HOME/.aws/config}" ]; then
    die "no AWS credentials found (environment, profile or ~/.aws); configure them first"
fi

globals=(--artifact "$artifact" --bucket "$bucket" --stage "$stage" --output json "${region_args[@]}")
workdir=$(mktemp -d "${TMPDIR:-/tmp}/ssm-smoke.XXXXXX")
echo "ssm-smoke: results in $workdir"

# Prints a command, one shell-quoted word at a time, then runs it; stdout goes to a file.
run() {
    local out=$1
    shift
    printf 'ssm-smoke: running:'
    printf ' %q' "$@"
    printf ' > %q\n' "$out"
    "$@" >"$out"
}

push=("$release_bin" "${globals[@]}" push --via ssm --asg "$group" --ssm-output "$ssm_output")
if [ -n "$health_command" ]; then
    push+=(--health-command "$health_command")
fi
push_status=0
run "$workdir/push.json" "${push[@]}" || push_status=$?
echo "ssm-smoke: push exited $push_status"
python3 - "$workdir/push.json" <<'PY' || true
import json, sys
doc = json.load(open(sys.argv[1]))
if "error" in doc:
    print("ssm-smoke: push error:", doc["error"].get("message"))
for line in doc.get("hosts", []):
    print("ssm-smoke:   {host}: {result} {before} -> {after} {log}".format(
        host=line.get("host"), result=line.get("result"), before=line.get("before"),
        after=line.get("after"), log=line.get("log") or ""))
print("ssm-smoke: push id:", doc.get("push_id"))
PY
if [ "$push_status" -ne 0 ]; then
    echo "ssm-smoke: FAILED: the push did not succeed on every instance (exit $push_status)" >&2
    exit 1
fi

check_status=0
run "$workdir/status.json" "$release_bin" "${globals[@]}" status --asg "$group" || check_status=$?
[ "$check_status" -eq 0 ] || { echo "ssm-smoke: FAILED: release status exited $check_status" >&2; exit 1; }
python3 - "$workdir/status.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
hosts = doc.get("hosts", [])
stable = doc.get("stable")
off = [h for h in hosts if h.get("state") != "stable"]
for h in hosts:
    print("ssm-smoke:   {id}: {state} (build {version})".format(
        id=h.get("instance") or h.get("host"), state=h.get("state"), version=h.get("version")))
if not hosts:
    sys.exit("ssm-smoke: FAILED: status lists no instance in the group")
if off:
    sys.exit("ssm-smoke: FAILED: {} of {} instance(s) not on stable build {}".format(
        len(off), len(hosts), stable))
print("ssm-smoke: OK: all {} instance(s) on stable build {}".format(len(hosts), stable))
PY
