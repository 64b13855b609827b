#!/usr/bin/env bash
# One machine, all its GPUs (or CPU cores / TPU chips): a single process drives every local device.
#
#   launch/local.sh configs/default.py workdirs/default [--config.training.batch_size=256 ...]
#
# Assumes: jaxlab installed in the active environment (pip install -e '.[cuda]' for GPUs).
# XLA preallocates 75% of GPU memory by default; we allocate on demand so several jobs can share a machine
# (export XLA_PYTHON_CLIENT_PREALLOCATE=true to get the faster default back).
set -euo pipefail
config=${1:?usage: launch/local.sh CONFIG WORKDIR [overrides...]}
workdir=${2:?usage: launch/local.sh CONFIG WORKDIR [overrides...]}
shift 2
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
exec python -m jaxlab.main --config="$config" --workdir="$workdir" "$@"
