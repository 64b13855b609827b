"""Pieces shared by several models."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.parallel import AXIS

# He et al. 2015, N(0, 2 / fan_out): torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu").
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class GhostBatchNorm(nn.Module):
    """BatchNorm whose statistics come from groups of `group_size` consecutive examples (ghost BatchNorm, Hoffer
    et al. 2017; Goyal et al. 2017 normalise over 32 images per GPU whatever the global batch).

    Training, group g of the local batch: y = (x - mu_g) / sqrt(var_g + eps) * scale + bias, with mu_g = E_g[x],
    var_g = E_g[x^2] - mu_g^2 over the group's examples and spatial positions, in float32 (nn.BatchNorm's
    arithmetic: with group_size = the local batch it computes the same values). Running statistics move towards the
    mean over groups of mu_g and var_g (momentum as nn.BatchNorm); the train step averages them over devices, so
    with equal groups per device they are the same on any device count. Evaluation uses the running statistics.
    Same variables as nn.BatchNorm (params scale, bias; batch_stats mean, var).
    """

    group_size: int
    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        features = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        dtype = self.dtype or x.dtype
        if self.use_running_average:
            mean, var, groups = running_mean.value, running_var.value, x
        else:
            if x.shape[0] % self.group_size:
                raise ValueError(f"ghost BatchNorm: the local batch of {x.shape[0]} examples is not a multiple of "
                                 f"model.bn_group_size={self.group_size}")
            groups = x.reshape(x.shape[0] // self.group_size, self.group_size, *x.shape[1:])
            moments = tuple(range(1, groups.ndim - 1))  # each group's examples and spatial positions
            grouped = groups.astype(jnp.float32)
            mean = grouped.mean(moments, keepdims=True)
            var = jnp.maximum((grouped * grouped).mean(moments, keepdims=True) - mean * mean, 0.0)
            if not self.is_initializing():
                over_groups = tuple(range(mean.ndim - 1))
                running_mean.value = (self.momentum * running_mean.value
                                      + (1 - self.momentum) * mean.mean(over_groups))
                running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var.mean(over_groups)
        y = (groups - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
        return jnp.asarray(y.reshape(x.shape), dtype)


def batch_norm(train: bool, dtype, sync: bool, group_size: int = 0):
    """nn.BatchNorm with torchvision's constants (momentum 0.1 in torch = 0.9 here, eps 1e-5), in one of three modes:

    per device (default): statistics of the local batch (per device under shard_map), so they depend on the
    device count; `sync`: of the whole batch along the "data" mesh axis (pmean of E[x] and E[x^2]);
    `group_size` > 0: of groups of that many consecutive examples within the local batch (`GhostBatchNorm`),
    the same on any device count when the local batch is a multiple of it.
    """
    if group_size:
        return functools.partial(GhostBatchNorm, group_size, use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, dtype=dtype)
    return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             dtype=dtype, axis_name=AXIS if sync else None)


def flatten(x: jax.Array) -> jax.Array:
    """(B, *shape) -> (B, prod(shape))."""
    return x.reshape(x.shape[0], -1)
