"""Fully connected ReLU network, e.g. the K-priors USPS nets 256-100-2 and 256-100-100-2."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.models.layers import flatten
from jaxlab.models.registry import compute_dtype, register_model


class MLP(nn.Module):
    """flatten -> [Dense(h) -> ReLU] for h in hidden_sizes -> Dense(num_classes)."""

    num_classes: int
    hidden_sizes: Sequence[int] = (100, 100)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = flatten(x)
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


@register_model("mlp")
def _mlp(model_config, num_classes: int) -> MLP:
    return MLP(num_classes, tuple(model_config.hidden_sizes), compute_dtype(model_config))
