"""Config -> Optax: learning-rate scaling, warm-up schedules, optimisers, weight-decay masks."""

from __future__ import annotations

import math
from typing import Any

import jax
import optax


def scaled_learning_rate(optimizer_config, batch_size: int) -> float:
    """Large-batch LR rule: lr * (batch_size / base_batch_size) ** p, p = 0 (none), 1 (linear,
    Goyal et al. 2017) or 1/2 (sqrt)."""
    power = {"none": 0.0, "linear": 1.0, "sqrt": 0.5}[optimizer_config.lr_scaling]
    return optimizer_config.learning_rate * (batch_size / optimizer_config.base_batch_size) ** power


def create_learning_rate_schedule(config, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """Linear warm-up from 0, then constant, cosine decay to end_lr_factor * lr, or steps."""
    lr = scaled_learning_rate(config.optimizer, config.training.batch_size)
    sched = config.schedule
    warmup = min(int(round(sched.warmup_epochs * steps_per_epoch)), total_steps)
    rest = max(total_steps - warmup, 1)
    if sched.name == "constant":
        main = optax.constant_schedule(lr)
    elif sched.name == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps=rest, alpha=sched.end_lr_factor)
    else:  # step: boundaries counted from the start of training, like torch's MultiStepLR
        boundaries = {int(round(e * steps_per_epoch)) - warmup: sched.decay_factor for e in sched.decay_epochs}
        main = optax.piecewise_constant_schedule(lr, {b: f for b, f in boundaries.items() if b > 0})
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def weight_decay_mask(params: Any, decay_bn_and_bias: bool = False) -> Any:
    """True where weight decay applies: kernels, not 1-D BN scales/biases (unless decay_bn_and_bias)."""
    return jax.tree.map(lambda p: decay_bn_and_bias or p.ndim > 1, params)


def trust_ratio_mask(params: Any) -> Any:
    """True where LARS / LAMB scale the update by the layer's trust ratio ||w|| / ||update||: kernels only. BN
    scales and biases (1-D) take the plain update, as in You et al. (LARS 2017, LAMB 2020) and Goyal et al."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(config, steps_per_epoch: int, total_steps: int
                     ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer named by config.optimizer, with its schedule.

    sgd/momentum/nesterov use coupled L2 decay as in PyTorch's SGD (g += wd * w before
    momentum); adamw/lamb decoupled decay; lars its own trust-ratio-scaled decay. LARS and LAMB apply the trust
    ratio to kernels only (`trust_ratio_mask`); optax.lamb would apply it to BN scales and biases too.
    """
    opt = config.optimizer
    schedule = create_learning_rate_schedule(config, steps_per_epoch, total_steps)
    mask = lambda params: weight_decay_mask(params, opt.decay_bn_and_bias)  # noqa: E731
    if opt.name in ("sgd", "momentum", "nesterov"):
        tx = optax.chain(
            optax.add_decayed_weights(opt.weight_decay, mask) if opt.weight_decay else optax.identity(),
            optax.sgd(schedule, momentum=None if opt.name == "sgd" else opt.momentum,
                      nesterov=opt.name == "nesterov"),
        )
    elif opt.name == "adamw":
        tx = optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay, mask=mask)
    elif opt.name == "lars":
        tx = optax.lars(schedule, weight_decay=opt.weight_decay, weight_decay_mask=mask,
                        trust_coefficient=opt.trust_coefficient, trust_ratio_mask=trust_ratio_mask,
                        momentum=opt.momentum)
    elif opt.name == "lamb":
        tx = optax.chain(  # optax.lamb's chain with the trust ratio masked
            optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps),
            optax.add_decayed_weights(opt.weight_decay, mask),
            optax.masked(optax.scale_by_trust_ratio(), trust_ratio_mask),
            optax.scale_by_learning_rate(schedule),
        )
    else:
        raise ValueError(f"config.optimizer.name: unknown optimizer {opt.name!r}")
    if opt.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
    return tx, schedule


def total_train_steps(config, steps_per_epoch: int) -> int:
    """num_train_steps if set, else ceil(num_epochs * steps_per_epoch)."""
    if config.training.num_train_steps > 0:
        return int(config.training.num_train_steps)
    return int(math.ceil(config.training.num_epochs * steps_per_epoch))
