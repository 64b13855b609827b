"""jaxlab.parallel: distributed_settings on simulated launcher environments (no process is started), the launch
scripts' device requests, and the device-side double buffer of training batches."""

import os

import pytest

from jaxlab import parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def slurm(ntasks, tasks_per_node, procid, localid, nodeid=0, **extra):
    """The variables srun gives one task of job 1234 on nodes gpu[001-00N]."""
    nodes = ntasks // tasks_per_node
    env = {"SLURM_JOB_ID": "1234", "SLURM_NTASKS": str(ntasks), "SLURM_STEP_NUM_TASKS": str(ntasks),
           "SLURM_PROCID": str(procid), "SLURM_LOCALID": str(localid), "SLURM_NODEID": str(nodeid),
           "SLURM_STEP_NODELIST": f"gpu[001-{nodes:03d}]" if nodes > 1 else "gpu001",
           "SLURM_JOB_NODELIST": f"gpu[001-{nodes:03d}]" if nodes > 1 else "gpu001",
           "SLURM_STEP_TASKS_PER_NODE": f"{tasks_per_node}(x{nodes})" if nodes > 1 else str(tasks_per_node)}
    return {**env, **extra}


PORT = 1234 % 4096 + 61440  # JAX's port for a SLURM job id


def test_no_launcher_is_one_process():
    assert parallel.distributed_settings({}) is None
    assert parallel.distributed_settings({"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0,1"}) is None
    # a single SLURM task (e.g. one node driving all its GPUs, or a sweep array task) is one process too
    assert parallel.distributed_settings(slurm(1, 1, 0, 0, CUDA_VISIBLE_DEVICES="0,1,2,3")) is None
    assert parallel.distributed_settings({"JAXLAB_NUM_PROCESSES": "1"}) is None


def test_single_node_one_task_per_gpu():
    """--ntasks-per-node=4 --gpus-per-node=4 --gpu-bind=none: every task sees the 4 GPUs, takes its own."""
    for local in range(4):
        s = parallel.distributed_settings(slurm(4, 4, local, local, CUDA_VISIBLE_DEVICES="0,1,2,3"))
        assert s == dict(coordinator_address=f"gpu001:{PORT}", num_processes=4, process_id=local,
                         local_device_ids=[local], cluster_detection_method="deactivate")


def test_two_nodes_four_tasks_each():
    """2 nodes x 4 tasks, 4 GPUs per node visible to every task of the node (the launcher's layout)."""
    seen = []
    for procid in range(8):
        node, local = divmod(procid, 4)
        s = parallel.distributed_settings(slurm(8, 4, procid, local, nodeid=node,
                                                CUDA_VISIBLE_DEVICES="0,1,2,3"))
        assert s["coordinator_address"] == f"gpu001:{PORT}"  # every task agrees on the first node
        assert (s["num_processes"], s["process_id"]) == (8, procid)
        seen.append((node, *s["local_device_ids"]))
    assert seen == [(n, g) for n in range(2) for g in range(4)]  # every GPU of every node exactly once


def test_two_tasks_per_node_share_four_gpus():
    s = [parallel.distributed_settings(slurm(4, 2, p, p % 2, nodeid=p // 2, CUDA_VISIBLE_DEVICES="0,1,2,3"))
         for p in range(4)]
    assert [x["local_device_ids"] for x in s] == [[0, 1], [2, 3], [0, 1], [2, 3]]


def test_one_task_per_node_drives_all_its_gpus():
    """--ntasks-per-node=1: JAX's own detection would give [SLURM_LOCALID] = [0], one GPU per node."""
    s = parallel.distributed_settings(slurm(2, 1, 1, 0, nodeid=1, CUDA_VISIBLE_DEVICES="0,1,2,3"))
    assert (s["num_processes"], s["process_id"], s["local_device_ids"]) == (2, 1, None)  # None: all it sees
    assert s["cluster_detection_method"] == "deactivate"  # so JAX does not restrict it to device 0


def test_gpus_per_task_binding():
    """--gpus-per-task=1: SLURM shows each task only its GPU, as CUDA device 0; JAX's SLURM detection asks
    for device SLURM_LOCALID ("invalid device ordinal" on every task but the first of each node)."""
    for local, gpu in enumerate(("4", "5", "6", "7")):
        s = parallel.distributed_settings(slurm(8, 4, 4 + local, local, nodeid=1, CUDA_VISIBLE_DEVICES=gpu,
                                                SLURM_GPUS_PER_TASK="1"))
        assert s["local_device_ids"] is None  # the one GPU the task sees
        assert s["process_id"] == 4 + local
    # two GPUs per task, two tasks per node: each task drives both of its GPUs
    s = parallel.distributed_settings(slurm(4, 2, 1, 1, CUDA_VISIBLE_DEVICES="2,3", SLURM_GPUS_PER_TASK="2"))
    assert s["local_device_ids"] is None
    # --gpu-bind=single:1 without --gpus-per-task: fewer GPUs visible than tasks on the node -> bound
    s = parallel.distributed_settings(slurm(8, 8, 3, 3, CUDA_VISIBLE_DEVICES="3"))
    assert s["local_device_ids"] is None


def test_slurm_corner_cases():
    # GPUs not managed by SLURM (no CUDA_VISIBLE_DEVICES): JAX's convention, task i drives device i
    assert parallel.distributed_settings(slurm(8, 4, 5, 1, nodeid=1))["local_device_ids"] == [1]
    assert parallel.distributed_settings(slurm(2, 1, 1, 0, nodeid=1))["local_device_ids"] is None
    # explicit overrides
    s = parallel.distributed_settings(slurm(8, 4, 1, 1, CUDA_VISIBLE_DEVICES="0,1,2,3", JAX_LOCAL_DEVICE_IDS="3",
                                            JAX_COORDINATOR_PORT="5555"))
    assert (s["local_device_ids"], s["coordinator_address"]) == ([3], "gpu001:5555")
    s = parallel.distributed_settings(slurm(8, 4, 1, 1, JAX_COORDINATOR_ADDRESS="10.0.0.1:7777"))
    assert s["coordinator_address"] == "10.0.0.1:7777"
    # an uneven share is refused with the fix rather than left to fail inside XLA
    with pytest.raises(ValueError, match="ntasks-per-node"):
        parallel.distributed_settings(slurm(3, 3, 0, 0, CUDA_VISIBLE_DEVICES="0,1,2,3"))
    # uneven task counts per node ("3(x2),2"): the third node runs 2 tasks sharing its 4 GPUs
    env = slurm(8, 4, 7, 1, nodeid=2, CUDA_VISIBLE_DEVICES="0,1,2,3", SLURM_STEP_TASKS_PER_NODE="3(x2),2",
                SLURM_STEP_NODELIST="gpu[003-004,9]-ib,login1")
    s = parallel.distributed_settings(env)
    assert (s["local_device_ids"], s["coordinator_address"]) == ([2, 3], f"gpu003-ib:{PORT}")


def test_explicit_and_auto_detected_launchers():
    s = parallel.distributed_settings({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAXLAB_NUM_PROCESSES": "2",
                                       "JAXLAB_PROCESS_ID": "1"})
    assert s == dict(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=1, local_device_ids=None,
                     cluster_detection_method="deactivate")
    with pytest.raises(ValueError, match="JAXLAB_PROCESS_ID"):
        parallel.distributed_settings({"JAXLAB_NUM_PROCESSES": "2"})
    # a TPU pod (or JAXLAB_DISTRIBUTED=1): JAX finds everything itself
    for env in ({"TPU_WORKER_HOSTNAMES": "a,b"}, {"JAXLAB_DISTRIBUTED": "1"}):
        s = parallel.distributed_settings(env)
        assert s is not None and set(s.values()) == {None}


def test_initialize_distributed_single_process_is_a_no_op(monkeypatch):
    called = []
    monkeypatch.setattr(parallel.jax.distributed, "initialize", lambda **kw: called.append(kw))
    parallel.initialize_distributed({})
    assert called == []
    monkeypatch.setattr(parallel.jax.distributed, "is_initialized", lambda: False)
    parallel.initialize_distributed(slurm(8, 4, 5, 1, nodeid=1, CUDA_VISIBLE_DEVICES="0,1,2,3"))
    assert called == [dict(coordinator_address=f"gpu001:{PORT}", num_processes=8, process_id=5,
                           local_device_ids=[1], cluster_detection_method="deactivate")]


def test_any_process_single_process_is_the_flag():
    assert parallel.any_process(True) is True
    assert parallel.any_process(False) is False


def test_slurm_script_requests_no_per_task_gpu_binding():
    with open(os.path.join(ROOT, "launch", "slurm.sbatch")) as f:
        directives = [line.split()[1] for line in f if line.startswith("#SBATCH")]
    assert not any(d.startswith("--gpus-per-task") for d in directives)
    assert "--gpu-bind=none" in directives
    tasks = next(int(d.split("=")[1]) for d in directives if d.startswith("--ntasks-per-node="))
    gpus = next(int(d.split("=")[1]) for d in directives if d.startswith("--gpus-per-node="))
    assert gpus % tasks == 0


def test_device_buffer_keeps_the_next_batch_on_the_devices_and_its_state_at_the_consumed_position():
    """The double buffer hands out the host batches in order, sharded; its state is the host iterator's after
    the batches handed out (a checkpoint resumes at the first batch no step used); `limit` caps the moves."""
    import numpy as np

    from jaxlab import data
    from tests.helpers import blobs_dataset

    dataset = blobs_dataset()
    mesh = parallel.make_mesh()
    host = data.TrainBatches(dataset.train, 24, seed=0, prefetch=0)
    reference = [next(data.TrainBatches(dataset.train, 24, seed=0, prefetch=0, start_step=t)) for t in range(3)]
    buffer = parallel.DeviceBuffer(host, mesh, limit=3)
    assert buffer.get_state()["step"] == 0
    first = next(buffer)
    assert buffer.get_state()["step"] == 1 and host.get_state()["step"] == 2  # one batch in flight
    np.testing.assert_array_equal(np.asarray(first["image"]), reference[0]["image"])
    assert first["image"].sharding.spec == parallel.BATCH
    rest = list(buffer)
    assert len(rest) == 2 and buffer.get_state()["step"] == 3 and host.get_state()["step"] == 3
    np.testing.assert_array_equal(np.asarray(rest[1]["label"]), reference[2]["label"])
