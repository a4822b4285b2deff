#!/bin/bash
# Runs on every boot of a worker instance, in one of three ways:
#   bootstrap.sh checkout      musicgen-checkout.service: bring the checkout to the configured ref,
#                              once per boot, before any worker starts.
#   bootstrap.sh worker INDEX  musicgen-worker@INDEX.service: one worker process pinned to GPU
#                              INDEX, with its own worker id (instance + GPU) and its own log, on the
#                              checkout brought up to date; its exit status goes to
#                              $MUSICGEN_RUN_DIR/gpuINDEX.exit for the instance's boot unit, and the
#                              worker's last `error:` line, when it failed, to gpuINDEX.reason.
#   bootstrap.sh               checkout and one worker in this process (a machine without systemd).
# Each run uploads its log to the bucket's logs/.
#
# It runs as the unprivileged musicgen user inside the units' sandbox and needs no root: the boot
# unit musicgen-worker.service (a root-owned script written by UserData) starts these units, reads
# the workers' exit statuses and reasons, and ends the instance with UserData's own end program
# (the scale-in needs nothing from this checkout).
#
# Settings come from MUSICGEN_ENV_FILE (default /etc/musicgen-batch/worker.env, written by the
# instance's UserData). Every path has a MUSICGEN_* setting so the script also runs outside EC2.
# Exit status: the worker's (docs/worker.md#exit-codes; 0 for `checkout`), or 4 when the checkout
# cannot be brought up to date.
set -euo pipefail

mode="${1:-single}"
case "$mode" in
  single | checkout) ;;
  worker)
    gpu_index="${2:-}"
    if ! [[ "$gpu_index" =~ ^[0-9]+$ ]]; then
      echo "bootstrap: worker needs a GPU index (0, 1, ...), got '$gpu_index'" >&2
      exit 2
    fi
    ;;
  *)
    echo "usage: bootstrap.sh [checkout | worker GPU_INDEX]" >&2
    exit 2
    ;;
esac

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
# Where each GPU's worker leaves its exit status for the boot unit: the units' RuntimeDirectory
# (tmpfs: a reboot starts clean).
run_dir="${MUSICGEN_RUN_DIR:-/run/musicgen-batch}"
python="$venv/bin/python"
# The package next to this script: the log upload works even when the checkout does not.
package_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The env file's worker settings (MUSICGEN_MAX_HOURS, MUSICGEN_MAX_ATTEMPTS, ...) reach the worker
# as they are: `set -a` exported them. The worker reads these too; the bucket root is its output
# so that the IAM policy's .checkpoints/ and .leases/ delete rights match the keys it writes.
export MUSICGEN_OUTPUT="${MUSICGEN_OUTPUT:-s3://$MUSICGEN_BUCKET}"
export MUSICGEN_PROMPTS="${MUSICGEN_PROMPTS:-prompts.txt}"
export PYTHONUNBUFFERED=1

mkdir -p "$log_dir"
started="$(date -u +%Y%m%dT%H%M%SZ)"
case "$mode" in
  single) log_name="run-$started" key_suffix="" ;;
  checkout) log_name="checkout-$started" key_suffix="-checkout" ;;
  worker) log_name="gpu$gpu_index-$started" key_suffix="-gpu$gpu_index" ;;
esac
log_file="$(cd "$log_dir" && pwd)/$log_name.log"

log() {
  echo "bootstrap: $*" | tee -a "$log_file"
}

# systemd stops a unit (the instance shutting down) by sending SIGTERM to every process in it.
# The worker answers by saving its checkpoints and exiting 3; this script and the tee writing the
# log must outlive that to upload the log, so the script only notes the signal and tee ignores it.
trap 'log "SIGTERM: waiting for the worker to save its checkpoints"' TERM
to_log() {
  trap '' TERM
  exec tee -a "$log_file"
}

# This instance's id (IMDSv2) when MUSICGEN_IMDS_ENDPOINT is set, else the host name: it names
# the logs and the workers. The worker's own code, on the AMI's venv (the AMI need not have the
# AWS CLI).
worker_tool() {
  (cd "$package_root" && "$python" -m worker.instance.upload_log "$@")
}

instance_name() {
  worker_tool --instance-name
}

upload_log() {
  local name
  name="$(instance_name)"
  worker_tool "$log_file" "$MUSICGEN_BUCKET" "logs/$name$key_suffix-$started.log" ||
    echo "bootstrap: log upload failed" >&2
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

checkout_or_exit() {
  log "checkout $MUSICGEN_REPO_URL ($repo_ref) into $checkout"
  if ! sync_checkout 2>&1 | to_log; then
    log "cannot update the checkout; not running the worker"
    upload_log
    exit 4
  fi
  log "commit $(git -C "$checkout" rev-parse HEAD)"
}

# GPUs of this machine, from the driver; a machine without GPUs (or without the driver) runs one
# worker, on the CPU.
gpu_count() {
  local count
  count="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU [0-9]' || true)"
  echo "$((count > 0 ? count : 1))"
}

run_worker() {
  # terraform's model_path, where packer/ baked the weights: its one default is there.
  : "${MUSICGEN_MODEL:?MUSICGEN_MODEL is not set (expected in $env_file)}"
  log "worker: output $MUSICGEN_OUTPUT, prompts $MUSICGEN_PROMPTS, model $MUSICGEN_MODEL"
  set +e
  # exec: the worker itself, not a subshell that a SIGTERM could end first, is the pipeline's head.
  (cd "$checkout" && exec "$python" -m worker) 2>&1 | to_log
  status="${PIPESTATUS[0]}"
  set -e
}

case "$mode" in
  single)
    checkout_or_exit
    run_worker
    log "worker exited $status"
    upload_log
    ;;

  checkout)
    checkout_or_exit
    upload_log
    status=0
    ;;

  worker)
    # The unit pins the GPU; the worker's id names the instance and the GPU, so each GPU's leases
    # and records are its own. Every worker gets its share of the cores and of the hourly cost.
    export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-$gpu_index}"
    export MUSICGEN_GPU_COUNT="${MUSICGEN_GPU_COUNT:-$(gpu_count)}"
    export MUSICGEN_WORKER_ID="${MUSICGEN_WORKER_ID:-$(instance_name)}-gpu$gpu_index"
    log "worker $MUSICGEN_WORKER_ID on GPU $gpu_index of $MUSICGEN_GPU_COUNT (CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES)"
    run_worker
    log "worker exited $status"
    upload_log
    mkdir -p "$run_dir"
    # Why it failed, in the worker's own words (e.g. "error: GPU unusable: ..."), for the boot unit.
    rm -f "$run_dir/gpu$gpu_index.reason"
    if ((status != 0)); then
      grep '^error: ' "$log_file" | tail -n 1 >"$run_dir/gpu$gpu_index.reason" || true
    fi
    echo "$status" >"$run_dir/gpu$gpu_index.exit"
    ;;
esac
exit "$status"
