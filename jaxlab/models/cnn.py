"""A small BatchNorm CNN for 8x8 to 32x32 images (digits, MNIST, CIFAR), quick on CPU."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.models.layers import batch_norm, conv_kernel_init
from jaxlab.models.registry import compute_dtype, register_model


class CNN(nn.Module):
    """conv3x3(w)-BN-ReLU, conv3x3(2w)-BN-ReLU, maxpool 2x2, conv3x3(2w)-BN-ReLU, global avg pool, Dense."""

    num_classes: int
    width: int = 32
    dtype: Any = jnp.float32
    bn_sync: bool = False
    bn_group_size: int = 0

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = functools.partial(nn.Conv, kernel_size=(3, 3), padding=1, use_bias=False,
                                 kernel_init=conv_kernel_init, dtype=self.dtype)
        norm = batch_norm(train, self.dtype, self.bn_sync, self.bn_group_size)
        x = nn.relu(norm()(conv(self.width)(x)))
        x = nn.relu(norm()(conv(2 * self.width)(x)))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(norm()(conv(2 * self.width)(x)))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


@register_model("cnn")
def _cnn(model_config, num_classes: int) -> CNN:
    return CNN(num_classes, model_config.width or CNN.width, compute_dtype(model_config), model_config.bn_sync,
               model_config.bn_group_size)
