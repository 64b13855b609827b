"""The trainer: device-count invariance, exact resume, exact evaluation, non-finite stops."""

import json

import flax.linen as nn
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import data, models, parallel
from jaxlab.errors import ConfigError, NonFiniteError
from jaxlab.train import (Extension, RunInfo, create_train_state, evaluate, loss_term,
                          make_eval_step, train_and_evaluate)
from jaxlab.train.checkpoint import Checkpointer
from jaxlab.train.optim import create_optimizer
from tests.helpers import blobs_dataset, sigterm_at, tiny_config


def _params(result):
    return jax.tree.map(np.asarray, jax.device_get(result["state"].params))


def test_one_device_equals_eight_devices_with_synced_bn(tmp_path):
    """Same global batch, same updates: the 1-device and 8-device runs end with the same params."""
    config = tiny_config(**{"model.name": "cnn", "model.width": 8, "model.bn_sync": True,
                            "training.num_train_steps": 5, "training.batch_size": 64})
    one = train_and_evaluate(config, str(tmp_path / "one"), mesh=parallel.make_mesh(1))
    eight = train_and_evaluate(config, str(tmp_path / "eight"), mesh=parallel.make_mesh(8))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), _params(one), _params(eight))
    np.testing.assert_allclose(one["accuracy"], eight["accuracy"], atol=1e-6)
    # A real update happened: params moved away from their initial values.
    init = jax.device_get(create_train_state(0, models.create_model(config.model, 10),
                                             create_optimizer(config, 22, 5)[0], (8, 8, 1)).params)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(init), jax.tree.leaves(_params(one))))
    assert moved > 1e-3


@pytest.mark.parametrize("bn_group_size", [0, 8])
def test_ghost_bn_gives_the_same_run_on_one_and_eight_devices(tmp_path, bn_group_size):
    """Ghost BatchNorm (groups of 8 of each device's 8 examples at batch 64 on 8 devices): statistics that do not
    depend on the device count, so 1 and 8 devices end with the same params and batch stats. Per-device
    statistics (group size 0, bn_sync off) are a different computation on 1 device (64 examples) and on 8."""
    config = tiny_config(**{"model.name": "cnn", "model.width": 8, "model.bn_group_size": bn_group_size,
                            "training.num_train_steps": 5, "training.batch_size": 64})
    one = train_and_evaluate(config, str(tmp_path / "one"), mesh=parallel.make_mesh(1))
    eight = train_and_evaluate(config, str(tmp_path / "eight"), mesh=parallel.make_mesh(8))
    stats = [jax.device_get(r["state"].batch_stats) for r in (one, eight)]
    if bn_group_size:
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), _params(one),
                     _params(eight))
        chex.assert_trees_all_close(*stats, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(one["accuracy"], eight["accuracy"], atol=1e-6)
    else:
        gap = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(stats[0]), jax.tree.leaves(stats[1])))
        assert gap > 1e-3


def test_resume_after_max_steps_matches_uninterrupted_run(tmp_path):
    config = tiny_config(**{"training.num_train_steps": 9, "checkpoint_every_steps": 2})
    full = train_and_evaluate(config, str(tmp_path / "full"))
    part = train_and_evaluate(config, str(tmp_path / "part"), max_steps=5)
    assert part["step"] == 5 and not part["finished"]
    resumed = train_and_evaluate(config, str(tmp_path / "part"))
    assert resumed["step"] == 9 and resumed["finished"]
    jax.tree.map(np.testing.assert_array_equal, _params(full), _params(resumed))
    np.testing.assert_array_equal(full["predictions"], resumed["predictions"])


def test_sigterm_checkpoints_and_resume_is_exact(tmp_path):
    config = tiny_config(**{"training.num_train_steps": 8})
    dataset = blobs_dataset()
    full = train_and_evaluate(config, str(tmp_path / "full"), dataset=dataset)
    stopped = train_and_evaluate(config, str(tmp_path / "pre"), dataset=sigterm_at(dataset, 3))
    assert stopped["preempted"] and 0 < stopped["step"] < 8
    assert Checkpointer(str(tmp_path / "pre")).latest_step() == stopped["step"]
    resumed = train_and_evaluate(config, str(tmp_path / "pre"), dataset=dataset)
    jax.tree.map(np.testing.assert_array_equal, _params(full), _params(resumed))


@pytest.mark.parametrize("num_devices, batch_size", [(1, 8), (8, 8), (8, 24), (8, 64), (2, 10)])
def test_eval_sees_every_example_once(num_devices, batch_size):
    dataset = blobs_dataset(num_test=37)
    config = tiny_config()
    model = models.create_model(config.model, dataset.num_classes)
    tx, _ = create_optimizer(config, 1, 1)
    mesh = parallel.make_mesh(num_devices)
    state = parallel.replicate(create_train_state(0, model, tx, dataset.image_shape), mesh)
    result = evaluate(make_eval_step(model, mesh, dataset.num_classes), state, dataset.test, batch_size, mesh)
    assert result["num_examples"] == 37
    assert int(result["confusion"].sum()) == 37
    np.testing.assert_array_equal(result["per_class_n"], np.bincount(dataset.test.labels, minlength=3))
    np.testing.assert_array_equal(result["labels"], dataset.test.labels)
    # Predictions agree with a plain single-device forward pass, example by example.
    logits = model.apply({"params": jax.device_get(state.params)}, dataset.test.images)
    np.testing.assert_array_equal(result["predictions"], np.argmax(logits, -1))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = tiny_config(**{"optimizer.learning_rate": 1e30, "optimizer.name": "sgd", "training.num_train_steps": 20,
                            "checkpoint_every_steps": 1, "log_every_steps": 1})
    with pytest.raises(NonFiniteError, match="learning_rate"):
        train_and_evaluate(config, str(tmp_path / "nan"))
    checkpointer = Checkpointer(str(tmp_path / "nan"))
    step = checkpointer.latest_step()
    assert step is not None and step < 20
    dataset = data.load_dataset(config.data)
    model = models.create_model(config.model, dataset.num_classes)
    template = create_train_state(0, model, create_optimizer(config, 1, 20)[0], dataset.image_shape)
    restored, _ = checkpointer.restore_latest(template, parallel.make_mesh())
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(restored.params))


def test_outputs_written_to_workdir(tmp_path):
    workdir = tmp_path / "run"
    result = train_and_evaluate(tiny_config(), str(workdir))
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["finished"] and summary["step"] == 6
    assert len(summary["per_class_accuracy"]) == 10 and sum(summary["per_class_n"]) == summary["num_examples"]
    np.testing.assert_allclose(summary["accuracy"], result["accuracy"])
    train_lines = [json.loads(line) for line in (workdir / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in train_lines] == [2, 4, 6]
    assert all(np.isfinite(r["loss"]) for r in train_lines)
    per_class = (workdir / "per_class.csv").read_text().splitlines()
    assert per_class[0] == "class,name,n,accuracy,false_positives" and len(per_class) == 11
    evals = [json.loads(line) for line in (workdir / "eval_per_class.jsonl").read_text().splitlines()]
    assert np.asarray(evals[-1]["confusion"]).shape == (10, 10)
    saved = np.load(workdir / "predictions.npz")
    np.testing.assert_array_equal(saved["predictions"], result["predictions"])


def test_extension_loss_and_augment_hooks_are_used(tmp_path):
    """An extension's loss term that pulls params to zero shrinks them; an augment that zeros images changes
    training."""
    config = tiny_config(**{"optimizer.weight_decay": 0.0})
    plain = _params(train_and_evaluate(config, str(tmp_path / "plain")))
    l2 = lambda params, batch, rng, inputs: 10.0 * sum(jnp.sum(p ** 2) for p in jax.tree.leaves(params))  # noqa
    shrink = _params(train_and_evaluate(config, str(tmp_path / "shrink"), extensions=[loss_term("l2", l2)]))
    norm = lambda tree: sum(float(np.sum(x ** 2)) for x in jax.tree.leaves(tree))  # noqa: E731
    assert norm(shrink) < 0.5 * norm(plain)
    seen_keys = []
    blank = _params(train_and_evaluate(
        config, str(tmp_path / "blank"),
        augment=lambda keys, images, labels: (seen_keys.append(keys.shape),
                                              (jnp.zeros_like(images), jax.nn.one_hot(labels, 10)))[1]))
    assert (64 // 8, 2) in seen_keys  # the train step's trace: a per-device shard of per-example keys
    first_kernel = lambda tree: jax.tree.leaves(tree)[1]  # noqa: E731
    assert not np.allclose(first_kernel(plain), first_kernel(blank))


def test_example_keys_depend_on_step_and_index_only():
    from jaxlab.train import example_keys
    rng = jax.random.PRNGKey(3)
    a = example_keys(rng, jnp.int32(5), jnp.array([0, 7, 9]))
    b = example_keys(rng, jnp.int32(5), jnp.array([9, 0]))
    np.testing.assert_array_equal(a[2], b[0])
    np.testing.assert_array_equal(a[0], b[1])
    c = example_keys(rng, jnp.int32(6), jnp.array([0]))
    assert not np.array_equal(a[0], c[0])


def test_cross_entropy_with_label_smoothing_matches_formula():
    from jaxlab.train import cross_entropy
    logits = jnp.array([[2.0, 0.0, -1.0]])
    log_p = np.log(np.exp([2.0, 0.0, -1.0]) / np.exp([2.0, 0.0, -1.0]).sum())
    np.testing.assert_allclose(cross_entropy(logits, jnp.array([0])), [-log_p[0]], rtol=1e-6)
    eps = 0.3  # target = (1 - eps) * one_hot + eps / K
    target = np.array([1 - eps + eps / 3, eps / 3, eps / 3])
    np.testing.assert_allclose(cross_entropy(logits, jnp.array([0]), eps), [-(target * log_p).sum()], rtol=1e-6)


def test_bfloat16_training_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboardX")
    config = tiny_config(**{"model.name": "cnn", "model.width": 4, "model.dtype": "bfloat16",
                            "training.num_train_steps": 3, "tensorboard": True})
    result = train_and_evaluate(config, str(tmp_path / "bf16"))
    assert np.isfinite(result["loss"])
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(result["state"].params))
    events = list((tmp_path / "bf16" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_extension_loss_sees_the_step(tmp_path):
    """A loss term gets batch["step"] (for coefficient schedules): here a loss of 100 * step shows in the log."""
    config = tiny_config(**{"training.num_train_steps": 3, "log_every_steps": 1})
    steps_seen = lambda params, batch, rng, inputs: 100.0 * batch["step"].astype(jnp.float32)  # noqa: E731
    train_and_evaluate(config, str(tmp_path / "run"), extensions=[loss_term("steps", steps_seen)])
    with open(tmp_path / "run" / "train.jsonl") as f:
        losses = [json.loads(line)["loss"] for line in f]
    assert len(losses) == 3 and all(90 < b - a < 110 for a, b in zip(losses, losses[1:]))


def test_extensions_wrap_the_model_pass_jit_inputs_report_metrics_and_finish(tmp_path):
    """One extension point: a wrapped model is trained, a loss term reads its own jit inputs, param metrics are
    logged, and finish writes a file and its summary entry; later extensions see the model wrapped before."""
    config = tiny_config(**{"training.num_train_steps": 2, "log_every_steps": 1})
    seen_models = []

    class Doubled(nn.Module):
        base: nn.Module

        @nn.compact
        def __call__(self, x, train=False):
            return 2.0 * self.base(x, train=train)

    def wrap(info: RunInfo) -> Extension:
        return Extension("wrap", model=Doubled(info.model))

    def weighted(info: RunInfo) -> Extension:
        seen_models.append(type(info.model).__name__)

        def finish(workdir, state, write):
            if write:
                (tmp_path / "finished.txt").write_text(str(int(state.step)))
            return {"steps": int(state.step)}

        return Extension("weighted", loss=lambda params, batch, rng, inputs: inputs["weight"] * 1.0,
                         loss_inputs={"weight": np.float32(7.0)},
                         param_metrics=lambda params: {"num_leaves": jnp.float32(len(jax.tree.leaves(params)))},
                         finish=finish)

    result = train_and_evaluate(config, str(tmp_path / "run"), extensions=[wrap, weighted])
    assert seen_models == ["Doubled"]
    assert result["weighted"] == {"steps": 2} and (tmp_path / "finished.txt").read_text() == "2"
    with open(tmp_path / "run" / "train.jsonl") as f:
        lines = [json.loads(line) for line in f]
    assert all(abs(r["loss"] - r["task_loss"] - 7.0) < 1e-4 and r["num_leaves"] == 4 for r in lines)


def test_training_can_start_from_given_variables(tmp_path):
    """initial_variables replaces the fresh init (and a wrong-shaped tree is refused before training)."""
    config = tiny_config(**{"training.num_train_steps": 1})
    first = train_and_evaluate(config, str(tmp_path / "first"))
    start = jax.device_get({"params": first["state"].params})
    tiny_lr = tiny_config(**{"training.num_train_steps": 1, "optimizer.learning_rate": 1e-12,
                             "optimizer.weight_decay": 0.0, "seed": 7})
    again = train_and_evaluate(tiny_lr, str(tmp_path / "again"), initial_variables=start)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9),
                 start["params"], jax.device_get(again["state"].params))
    fresh = train_and_evaluate(tiny_lr, str(tmp_path / "fresh"))
    assert not np.allclose(jax.tree.leaves(start)[-1], jax.tree.leaves(jax.device_get(fresh["state"].params))[-1])
    bad = jax.tree.map(lambda x: x[..., :1], start)
    with pytest.raises(ValueError, match="initial_variables"):
        train_and_evaluate(tiny_lr, str(tmp_path / "bad"), initial_variables=bad)


def test_head_logits_restrict_the_softmax_to_the_labels_task():
    """head_size 2 over 6 classes: the loss of an example is the 2-class cross-entropy of its own pair's logits, its
    prediction lies in its pair; head_size 0 leaves the logits alone."""
    from jaxlab.train import cross_entropy
    from jaxlab.train.step import head_logits
    logits = jnp.array([[5.0, 1.0, 0.5, -1.0, 9.0, 2.0], [0.0, 3.0, 1.0, 2.0, 7.0, 8.0]])
    labels = jnp.array([3, 1])
    masked = head_logits(logits, labels, 2)
    np.testing.assert_array_equal(jnp.argmax(masked, -1), [2, 1])  # within (2, 3) and (0, 1)
    pair = lambda row, a: np.log(np.exp(row[a]) / np.exp(row[(a // 2) * 2:(a // 2) * 2 + 2]).sum())  # noqa: E731
    np.testing.assert_allclose(cross_entropy(masked, labels), [-pair(logits[0], 3), -pair(logits[1], 1)], rtol=1e-6)
    np.testing.assert_array_equal(head_logits(logits, labels, 0), logits)


def test_task_incremental_heads_in_training_and_evaluation(tmp_path):
    """training.head_size 5 on the 10 digits: evaluation predicts every example within its label's head (so the
    confusion matrix is block-diagonal) and a head size that does not divide the classes is a ConfigError."""
    result = train_and_evaluate(tiny_config(**{"training.head_size": 5}), str(tmp_path / "heads"))
    assert np.all(result["predictions"] // 5 == result["labels"] // 5)
    with pytest.raises(ConfigError, match="training.head_size"):
        train_and_evaluate(tiny_config(**{"training.head_size": 3}), str(tmp_path / "bad"))


def test_label_smoothing_twice_is_a_config_error_before_training(tmp_path):
    """mixup_cutmix smooths the targets (default 0.1); training.label_smoothing on top would smooth them again."""
    config = tiny_config(**{"augment.pipeline": "mixup_cutmix", "training.label_smoothing": 0.1})
    with pytest.raises(ConfigError, match="training.label_smoothing.*mixup_cutmix already smooths"):
        train_and_evaluate(config, str(tmp_path / "twice"))
    assert not (tmp_path / "twice" / "checkpoints").exists()
