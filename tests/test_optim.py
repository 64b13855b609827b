"""Optimiser factory: LR scaling rules, schedules, weight-decay masks, PyTorch-style SGD."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.train.optim import (create_learning_rate_schedule, create_optimizer, scaled_learning_rate,
                                total_train_steps, trust_ratio_mask, weight_decay_mask)
from tests.helpers import tiny_config


@pytest.mark.parametrize("rule, expected", [("none", 0.1), ("linear", 0.1 * 4096 / 256), ("sqrt", 0.1 * 4.0)])
def test_lr_scaling_rules(rule, expected):
    config = tiny_config(**{"optimizer.lr_scaling": rule, "optimizer.learning_rate": 0.1,
                            "optimizer.base_batch_size": 256, "training.batch_size": 4096})
    assert scaled_learning_rate(config.optimizer, 4096) == pytest.approx(expected)


def test_warmup_then_cosine():
    config = tiny_config(**{"schedule.name": "cosine", "schedule.warmup_epochs": 2.0, "optimizer.learning_rate": 1.0})
    schedule = create_learning_rate_schedule(config, steps_per_epoch=10, total_steps=120)
    assert float(schedule(0)) == 0.0
    assert float(schedule(10)) == pytest.approx(0.5)
    assert float(schedule(20)) == pytest.approx(1.0)
    assert float(schedule(70)) == pytest.approx(0.5, abs=1e-6)   # half-way through the cosine
    assert float(schedule(120)) == pytest.approx(0.0, abs=1e-7)


def test_step_schedule_counts_epochs_from_start():
    config = tiny_config(**{"schedule.name": "step", "schedule.warmup_epochs": 1.0, "schedule.decay_epochs": (3, 6),
                            "schedule.decay_factor": 0.1, "optimizer.learning_rate": 1.0})
    schedule = create_learning_rate_schedule(config, steps_per_epoch=10, total_steps=100)
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(29)) == pytest.approx(1.0)
    assert float(schedule(31)) == pytest.approx(0.1)
    assert float(schedule(61)) == pytest.approx(0.01)


def test_constant_schedule():
    config = tiny_config(**{"schedule.name": "constant", "optimizer.learning_rate": 0.3})
    schedule = create_learning_rate_schedule(config, steps_per_epoch=10, total_steps=100)
    assert float(schedule(0)) == pytest.approx(0.3) and float(schedule(99)) == pytest.approx(0.3)


def test_weight_decay_mask_skips_bn_and_bias():
    params = {"conv": {"kernel": jnp.ones((3, 3, 1, 4)), "bias": jnp.ones(4)}, "bn": {"scale": jnp.ones(4)}}
    assert weight_decay_mask(params) == {"conv": {"kernel": True, "bias": False}, "bn": {"scale": False}}
    assert all(jax.tree.leaves(weight_decay_mask(params, decay_bn_and_bias=True)))


def test_momentum_sgd_matches_pytorch_update_rule():
    """PyTorch SGD: g += wd * w (kernels only); buf = m * buf + g; w -= lr * buf."""
    config = tiny_config(**{"optimizer.name": "momentum", "optimizer.learning_rate": 0.1, "optimizer.momentum": 0.9,
                            "optimizer.weight_decay": 0.01, "schedule.name": "constant"})
    tx, _ = create_optimizer(config, 1, 10)
    params = {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([0.5])}
    grads = {"kernel": jnp.array([[0.3, 0.1]]), "bias": jnp.array([0.2])}
    state = tx.init(params)
    w, b, buf_w, buf_b = np.array([[1.0, -2.0]]), np.array([0.5]), 0.0, 0.0
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        buf_w = 0.9 * buf_w + (np.array([[0.3, 0.1]]) + 0.01 * w)
        buf_b = 0.9 * buf_b + np.array([0.2])
        w, b = w - 0.1 * buf_w, b - 0.1 * buf_b
    chex.assert_trees_all_close(params, {"kernel": w, "bias": b}, rtol=1e-6)


@pytest.mark.parametrize("name, lr", [("sgd", 0.05), ("momentum", 0.05), ("nesterov", 0.05), ("adamw", 0.05),
                                      ("lars", 20.0), ("lamb", 0.05)])  # LARS steps are lr * 0.001 * |w|/|g|
def test_every_optimizer_reduces_a_quadratic(name, lr):
    config = tiny_config(**{"optimizer.name": name, "optimizer.learning_rate": lr, "schedule.name": "constant",
                            "optimizer.weight_decay": 0.0, "optimizer.grad_clip_norm": 1.0})
    tx, _ = create_optimizer(config, 1, 50)
    params = {"kernel": jnp.full((2, 2), 3.0)}
    loss = lambda p: jnp.sum(p["kernel"] ** 2)  # noqa: E731
    state = tx.init(params)
    for _ in range(50):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < 0.5 * 36.0


def test_total_train_steps():
    assert total_train_steps(tiny_config(**{"training.num_train_steps": -1, "training.num_epochs": 2.5}), 10) == 25
    assert total_train_steps(tiny_config(**{"training.num_train_steps": 7}), 10) == 7


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_trust_ratio_scales_kernels_only(name):
    """LARS and LAMB scale a kernel's update by its trust ratio ||w|| / ||u||, not a BN scale's or a bias's (even
    with decay_bn_and_bias): those take the optimiser's plain update (momentum SGD for LARS, Adam for LAMB)."""
    config = tiny_config(**{"optimizer.name": name, "optimizer.learning_rate": 0.1, "schedule.name": "constant",
                            "optimizer.weight_decay": 0.0, "optimizer.decay_bn_and_bias": True})
    tx, _ = create_optimizer(config, 1, 10)
    params = {"kernel": jnp.full((2, 2), 5.0), "scale": jnp.full((2,), 5.0), "bias": jnp.full((2,), 5.0)}
    grads = {"kernel": jnp.full((2, 2), 0.5), "scale": jnp.full((2,), 0.5), "bias": jnp.full((2,), 0.5)}
    updates, _ = tx.update(grads, tx.init(params), params)
    plain = 0.5 if name == "lars" else 1.0  # LAMB's first Adam step: m / sqrt(v) = sign(g)
    np.testing.assert_allclose(updates["scale"], -0.1 * plain, rtol=1e-5)
    np.testing.assert_allclose(updates["bias"], -0.1 * plain, rtol=1e-5)
    ratio = 0.001 * 10.0 / 1.0 if name == "lars" else 10.0 / 2.0  # LARS: trust_coefficient ||w|| / ||g||
    np.testing.assert_allclose(updates["kernel"], -0.1 * ratio * plain, rtol=1e-4)
    assert trust_ratio_mask(params) == {"kernel": True, "scale": False, "bias": False}

