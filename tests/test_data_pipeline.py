"""Host-side batching: TrainBatches determinism/resumption/sharding and exact padded eval batches."""

import json

import jax
import numpy as np
import pytest

from jaxlab import data


def make_source(n: int) -> data.ArraySource:
    """Example i has image [i, i] and label i % 3, so batches can be checked against their indices."""
    return data.ArraySource(np.repeat(np.arange(n, dtype=np.float32)[:, None], 2, axis=1), np.arange(n) % 3)


def take(batches, n: int) -> list[np.ndarray]:
    return [next(batches)["index"] for _ in range(n)]


def test_batches_match_their_indices_and_are_deterministic():
    source = make_source(50)
    batches = data.TrainBatches(source, 8, seed=3, prefetch=0)
    batch = next(batches)
    assert batch["image"].shape == (8, 2) and batch["label"].dtype == np.int32
    np.testing.assert_array_equal(batch["image"][:, 0], batch["index"])
    np.testing.assert_array_equal(batch["label"], batch["index"] % 3)
    again = data.TrainBatches(source, 8, seed=3, prefetch=0)
    np.testing.assert_array_equal(take(again, 12)[0], batch["index"])
    other = data.TrainBatches(source, 8, seed=4, prefetch=0)
    assert not np.array_equal(next(other)["index"], batch["index"])


def test_each_example_once_per_epoch_and_epochs_differ():
    batches = data.TrainBatches(make_source(50), 8, seed=0, prefetch=0)
    assert batches.steps_per_epoch == 6
    epochs = [np.concatenate(take(batches, 6)) for _ in range(2)]
    for epoch in epochs:
        assert len(np.unique(epoch)) == 48 and epoch.max() < 50  # remainder of 2 dropped
    assert not np.array_equal(epochs[0], epochs[1])


@pytest.mark.parametrize("prefetch", [0, 3])
def test_resume_equals_uninterrupted_stream(prefetch):
    source = make_source(30)
    uninterrupted = take(data.TrainBatches(source, 4, seed=1, prefetch=prefetch), 20)

    first = data.TrainBatches(source, 4, seed=1, prefetch=prefetch)
    head = take(first, 9)
    state = json.loads(json.dumps(first.get_state()))
    first.close()
    resumed = data.TrainBatches(source, 4, seed=99, prefetch=prefetch)
    resumed.set_state(state)
    tail = take(resumed, 11)
    np.testing.assert_array_equal(np.stack(head + tail), np.stack(uninterrupted))

    resumed.set_state({"step": 2, "seed": 1})  # rewinding a running stream
    np.testing.assert_array_equal(next(resumed)["index"], uninterrupted[2])
    start = data.TrainBatches(source, 4, seed=1, start_step=15, prefetch=prefetch)
    np.testing.assert_array_equal(next(start)["index"], uninterrupted[15])
    resumed.close()
    start.close()


def test_prefetch_does_not_change_results():
    source = make_source(40)
    streams = [take(data.TrainBatches(source, 8, seed=2, prefetch=p), 13) for p in (0, 1, 4)]
    for stream in streams[1:]:
        np.testing.assert_array_equal(np.stack(stream), np.stack(streams[0]))


def test_processes_concatenate_to_global_batch():
    source = make_source(41)
    whole = data.TrainBatches(source, 8, seed=5, process_index=0, process_count=1, prefetch=0)
    hosts = [data.TrainBatches(source, 8, seed=5, process_index=p, process_count=2, prefetch=0) for p in (0, 1)]
    for _ in range(7):
        parts = [next(h) for h in hosts]
        assert all(len(p["index"]) == 4 for p in parts)
        np.testing.assert_array_equal(np.concatenate([p["index"] for p in parts]), next(whole)["index"])


def test_train_batches_errors():
    with pytest.raises(data.DataError, match="divisible"):
        data.TrainBatches(make_source(20), 6, seed=0, process_index=0, process_count=4)
    with pytest.raises(data.DataError, match="fewer than the global batch"):
        data.TrainBatches(make_source(5), 8, seed=0)


def test_prefetch_thread_reraises_and_closes():
    class Broken(data.ArraySource):
        def __getitems__(self, indices):
            raise RuntimeError("disk on fire")

    batches = data.TrainBatches(Broken(np.zeros((10, 1)), np.zeros(10)), 2, seed=0, prefetch=2)
    with pytest.raises(RuntimeError, match="disk on fire"):
        next(batches)
    assert batches.get_state()["step"] == 0
    ok = data.TrainBatches(make_source(10), 2, seed=0, prefetch=2)
    next(ok)
    thread = ok._thread
    ok.close()
    assert not thread.is_alive()


@pytest.mark.parametrize("n, batch_size, process_count", [
    (37, 8, 1), (37, 8, 2), (100, 24, 1), (100, 24, 2), (100, 24, 3), (5, 8, 4), (16, 8, 2), (0, 8, 2),
])
def test_eval_batches_cover_each_example_once(n, batch_size, process_count):
    source = make_source(n)
    per_host = [list(data.eval_batches(source, batch_size, process_index=p, process_count=process_count))
                for p in range(process_count)]
    expected_batches = data.num_eval_batches(n, batch_size)
    assert expected_batches == -(-n // batch_size)
    assert all(len(batches) == expected_batches for batches in per_host)
    real = []
    for step in range(expected_batches):
        for host in per_host:
            batch = host[step]
            assert set(batch) == {"image", "label", "index", "mask"}
            assert batch["image"].shape == (batch_size // process_count, 2)
            assert batch["mask"].dtype == np.float32 and batch["mask"].shape == (batch_size // process_count,)
            real.append(batch["index"][batch["mask"] == 1.0])
            np.testing.assert_array_equal(batch["image"][:, 0], batch["index"])
    np.testing.assert_array_equal(np.concatenate(real) if real else [], np.arange(n))


def test_to_float_is_jit_safe():
    pixels = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_allclose(jax.jit(data.to_float)(pixels), [[0.0, 0.2, 1.0]], rtol=1e-6)
    features = np.array([[-1.0, 0.5]], np.float32)
    out = data.to_float(features)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, features)
