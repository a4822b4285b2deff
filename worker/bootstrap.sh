#!/bin/bash
# Runs on every boot of a worker (systemd unit musicgen-worker.service): bring the checkout to the
# configured ref, run the batch, upload the run's log to the bucket.
#
# It runs as the unprivileged musicgen user inside the unit's sandbox and needs no root: the
# shutdown after a complete batch is the unit's root ExecStopPost (written by UserData), which
# reads this script's exit status.
#
# Settings come from MUSICGEN_ENV_FILE (default /etc/musicgen-batch/worker.env, written by the
# instance's UserData). Every path has a MUSICGEN_* setting so the script also runs outside EC2.
# Exit status: the worker's (0 all songs exist, 1 some song failed, 2 unusable input, 3 stopped by
# a spot notice or shutdown), or 4 when the checkout cannot be brought up to date.
set -euo pipefail

env_file="${MUSICGEN_ENV_FILE:-/etc/musicgen-batch/worker.env}"
if [ -r "$env_file" ]; then
  set -a
  # shellcheck source=/dev/null
  . "$env_file"
  set +a
fi

: "${MUSICGEN_REPO_URL:?MUSICGEN_REPO_URL is not set (expected in $env_file)}"
: "${MUSICGEN_BUCKET:?MUSICGEN_BUCKET is not set (expected in $env_file)}"
repo_ref="${MUSICGEN_REPO_REF:-main}"
checkout="${MUSICGEN_CHECKOUT_DIR:-/opt/musicgen/app}"
venv="${MUSICGEN_VENV:-/opt/musicgen/venv}"
log_dir="${MUSICGEN_LOG_DIR:-/var/log/musicgen-batch}"
python="$venv/bin/python"

# The worker reads these; the bucket root is its output so that the IAM policy's
# .checkpoints/ and .leases/ delete rights match the keys it writes.
export MUSICGEN_OUTPUT="${MUSICGEN_OUTPUT:-s3://$MUSICGEN_BUCKET}"
export MUSICGEN_PROMPTS="${MUSICGEN_PROMPTS:-prompts.txt}"
export MUSICGEN_MODEL="${MUSICGEN_MODEL:-/opt/musicgen/models/musicgen-small}"
export PYTHONUNBUFFERED=1

mkdir -p "$log_dir"
started="$(date -u +%Y%m%dT%H%M%SZ)"
log_file="$log_dir/run-$started.log"

log() {
  echo "bootstrap: $*" | tee -a "$log_file"
}

# systemd stops the unit (the instance shutting down) by sending SIGTERM to every process in it.
# The worker answers by saving its checkpoints and exiting 3; this script and the tee writing the
# log must outlive that to upload the log, so the script only notes the signal and tee ignores it.
trap 'log "SIGTERM: waiting for the worker to save its checkpoints"' TERM
to_log() {
  trap '' TERM
  exec tee -a "$log_file"
}

# Uploads with the AMI's venv (boto3), not the AWS CLI, which the AMI need not have. The key names
# the instance (IMDSv2) when MUSICGEN_IMDS_ENDPOINT is set, else the host.
upload_log() {
  "$python" - "$log_file" "$MUSICGEN_BUCKET" "$started" <<'PY' || echo "bootstrap: log upload failed" >&2
import os
import socket
import sys
import urllib.request

import boto3

log_file, bucket, started = sys.argv[1:4]
name = socket.gethostname()
imds = os.environ.get("MUSICGEN_IMDS_ENDPOINT", "").rstrip("/")
if imds:
    try:
        token_request = urllib.request.Request(
            f"{imds}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        )
        token = urllib.request.urlopen(token_request, timeout=2).read().decode()
        id_request = urllib.request.Request(
            f"{imds}/latest/meta-data/instance-id",
            headers={"X-aws-ec2-metadata-token": token},
        )
        name = urllib.request.urlopen(id_request, timeout=2).read().decode().strip() or name
    except OSError:
        pass
key = f"logs/{name}-{started}.log"
region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
boto3.client("s3", region_name=region).upload_file(log_file, bucket, key)
print(f"bootstrap: log uploaded to s3://{bucket}/{key}")
PY
}

# A private repository (MUSICGEN_GIT_TOKEN_PARAMETER set): git gets the token from the credential
# helper, which reads the SSM parameter with the instance role and answers over a pipe, so the
# token is never in the URL, a command line, the environment or this log. The empty helper first
# drops any other configured helper.
git_auth=()
if [ -n "${MUSICGEN_GIT_TOKEN_PARAMETER:-}" ]; then
  export MUSICGEN_GIT_TOKEN_PARAMETER
  helper="${MUSICGEN_GIT_CREDENTIAL_HELPER:-/usr/local/lib/musicgen-batch/git-credential-ssm.py}"
  git_auth=(-c credential.helper= -c "credential.helper=!$(printf '%q %q' "$python" "$helper")")
fi

sync_checkout() {
  # Inside `if`, errexit is off: every step is chained so a failed fetch cannot fall through to a
  # reset onto an older FETCH_HEAD.
  if [ ! -d "$checkout/.git" ]; then
    mkdir -p "$checkout" &&
      git -c init.defaultBranch=musicgen -C "$checkout" init --quiet &&
      git -C "$checkout" remote add origin "$MUSICGEN_REPO_URL" || return 1
  fi
  # Fetching the ref itself works for a branch, a tag or a commit, and the reset drops any local
  # change from an earlier run, so every boot runs exactly the configured ref.
  git -C "$checkout" remote set-url origin "$MUSICGEN_REPO_URL" &&
    git "${git_auth[@]}" -C "$checkout" fetch --quiet --depth 1 origin "$repo_ref" &&
    git -C "$checkout" reset --quiet --hard FETCH_HEAD
}

log "checkout $MUSICGEN_REPO_URL ($repo_ref) into $checkout"
if ! sync_checkout 2>&1 | to_log; then
  log "cannot update the checkout; not running the worker"
  upload_log
  exit 4
fi
log "commit $(git -C "$checkout" rev-parse HEAD)"

log "worker: output $MUSICGEN_OUTPUT, prompts $MUSICGEN_PROMPTS, model $MUSICGEN_MODEL"
set +e
# exec: the worker itself, not a subshell that a SIGTERM could end first, is the pipeline's head.
(cd "$checkout" && exec "$python" -m worker) 2>&1 | to_log
status="${PIPESTATUS[0]}"
set -e
log "worker exited $status"
upload_log
exit "$status"
