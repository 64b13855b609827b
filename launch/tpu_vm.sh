#!/usr/bin/env bash
# Every worker of a Cloud TPU VM pod slice runs the same command (JAX needs one process per host).
#
#   launch/tpu_vm.sh TPU_NAME ZONE configs/default.py gs://bucket/workdirs/run1 [overrides...]
#
# Assumes: the repository is checked out at ~/jaxlab on every worker with jaxlab installed
# (pip install -e . plus jax[tpu]), and the workdir is on storage all workers share (a GCS bucket via
# orbax/etils paths, or an NFS mount). On a TPU VM, jax.distributed.initialize() finds the other hosts by
# itself; jaxlab calls it when TPU_WORKER_HOSTNAMES is set.
set -euo pipefail
tpu=${1:?usage: launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [overrides...]}
zone=${2:?usage: launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [overrides...]}
config=${3:?usage: launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [overrides...]}
workdir=${4:?usage: launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [overrides...]}
shift 4
overrides=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command \
  "cd ~/jaxlab && python -m jaxlab.main --config=$config --workdir=$workdir$overrides"
