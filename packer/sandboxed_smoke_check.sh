#!/bin/bash
# The AMI build's smoke check as the worker units run it: `systemd-run` starts PROGRAM as a
# transient service with every setting of the units' sandbox drop-in (the very file the
# instance's UserData installs: terraform/modules/worker/files/sandbox.conf), on the build
# instance's GPUs. An AMI whose driver nodes, CUDA or model the sandboxed worker cannot use then
# fails to build, instead of failing the batch.
#   sandboxed_smoke_check.sh SANDBOX_CONF PROGRAM [ARGUMENTS...]
# Exit status: PROGRAM's (systemd-run(1): with --wait it returns the service's exit status).
set -euo pipefail
sandbox="$1"
shift
# Each `Setting=value` line is one property: systemd-run's --property takes the unit file syntax.
mapfile -t settings < <(grep -E '^[A-Za-z]+=' "$sandbox")
# The units' directories drop-in names these folders with %S and %C; here they are spelled out.
exec systemd-run --wait --pipe --collect --quiet \
  "${settings[@]/#/--property=}" \
  --setenv=HOME=/var/lib/musicgen-batch \
  --setenv=XDG_CACHE_HOME=/var/cache/musicgen-batch \
  --setenv=HF_HOME=/var/cache/musicgen-batch/huggingface \
  --setenv=CUDA_CACHE_PATH=/var/cache/musicgen-batch/nv-compute \
  -- "$@"
