"""LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, for MNIST-sized images, without BatchNorm."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.models.layers import conv_kernel_init, flatten
from jaxlab.models.registry import compute_dtype, register_model


class LeNet(nn.Module):
    """conv5x5(w, pad 2)-ReLU, maxpool 2x2, conv5x5(16w/6, valid)-ReLU, maxpool 2x2, flatten,
    Dense(120)-ReLU, Dense(84)-ReLU, Dense(num_classes); w = 6 is LeNet-5 (61,706 params for 28x28x1, 10 classes).

    No BatchNorm (the convs keep their biases): the logits f_w(x) depend on the params and x alone, with no
    batch_stats and no train/eval difference, as the K-prior's function-space term needs. Inputs are
    (B, H, W, C), or (B, H, W) which gets a channel axis.
    """

    num_classes: int
    width: int = 6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.ndim == 3:
            x = x[..., None]
        conv = functools.partial(nn.Conv, kernel_size=(5, 5), kernel_init=conv_kernel_init, dtype=self.dtype)
        x = nn.relu(conv(self.width, padding=2)(x))  # 28x28 -> 28x28 ("SAME")
        x = nn.max_pool(x, (2, 2), strides=(2, 2))  # -> 14x14
        x = nn.relu(conv(self.width * 16 // 6, padding="VALID")(x))  # -> 10x10
        x = nn.max_pool(x, (2, 2), strides=(2, 2))  # -> 5x5
        x = flatten(x)
        x = nn.relu(nn.Dense(120, dtype=self.dtype)(x))
        x = nn.relu(nn.Dense(84, dtype=self.dtype)(x))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


@register_model("lenet")
def _lenet(model_config, num_classes: int) -> LeNet:
    return LeNet(num_classes, model_config.width or LeNet.width, compute_dtype(model_config))
