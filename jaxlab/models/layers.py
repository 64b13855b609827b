"""Pieces shared by several models."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from jaxlab.parallel import AXIS

# He et al. 2015, N(0, 2 / fan_out): torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu").
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def batch_norm(train: bool, dtype, sync: bool):
    """nn.BatchNorm with torchvision's constants (momentum 0.1 in torch = 0.9 here, eps 1e-5).

    Batch statistics come from the local batch (per device under shard_map), or, with
    `sync`, from the whole batch along the "data" mesh axis (pmean of E[x] and E[x^2]).
    """
    return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             dtype=dtype, axis_name=AXIS if sync else None)


def flatten(x: jax.Array) -> jax.Array:
    """(B, *shape) -> (B, prod(shape))."""
    return x.reshape(x.shape[0], -1)
