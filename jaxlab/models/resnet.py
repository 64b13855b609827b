"""ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016), laid out as torchvision's.

Bottleneck blocks stride on the 3x3 conv (torchvision's "ResNet v1.5"); projection shortcuts
(1x1 conv + BN) wherever the shape changes; convs He-normal in fan_out mode, no bias.
Stems: ImageNet (conv7x7/2, BN, ReLU, maxpool3x3/2 with padding 1) or CIFAR (conv3x3/1, BN,
ReLU, no pooling). Submodule names follow torchvision's (conv1, bn1, layer1_0, ..., fc).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.models.layers import batch_norm, conv_kernel_init
from jaxlab.models.registry import compute_dtype, register_model

ModuleDef = Callable[..., nn.Module]


def _shortcut(x, features: int, strides: int, conv: ModuleDef, norm: ModuleDef):
    """Identity, or a 1x1 conv + BN projection when the stride or channel count changes."""
    if strides == 1 and x.shape[-1] == features:
        return x
    return norm(name="downsample_bn")(conv(features, (1, 1), strides, padding=0, name="downsample_conv")(x))


class BasicBlock(nn.Module):
    """relu(bn(conv3x3(relu(bn(conv3x3/s(x))))) + shortcut(x)); output channels = filters."""

    filters: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef
    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x):
        y = nn.relu(self.norm(name="bn1")(self.conv(self.filters, (3, 3), self.strides, padding=1, name="conv1")(x)))
        y = self.norm(name="bn2")(self.conv(self.filters, (3, 3), 1, padding=1, name="conv2")(y))
        return nn.relu(y + _shortcut(x, self.filters, self.strides, self.conv, self.norm))


class BottleneckBlock(nn.Module):
    """conv1x1(f) -> conv3x3/s(f) -> conv1x1(4f), each with BN (ReLU on the first two), + shortcut, ReLU."""

    filters: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef
    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x):
        features = self.filters * self.expansion
        y = nn.relu(self.norm(name="bn1")(self.conv(self.filters, (1, 1), 1, padding=0, name="conv1")(x)))
        y = nn.relu(self.norm(name="bn2")(self.conv(self.filters, (3, 3), self.strides, padding=1, name="conv2")(y)))
        y = self.norm(name="bn3")(self.conv(features, (1, 1), 1, padding=0, name="conv3")(y))
        return nn.relu(y + _shortcut(x, features, self.strides, self.conv, self.norm))


class ResNet(nn.Module):
    """Stem, then stages of `stage_sizes[i]` blocks at width * 2^i (stride 2 entering stages 2..4), avg pool, fc."""

    stage_sizes: Sequence[int]
    block_cls: type[nn.Module]
    num_classes: int
    width: int = 64
    imagenet_stem: bool = False
    dtype: Any = jnp.float32
    bn_sync: bool = False
    bn_group_size: int = 0

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = functools.partial(nn.Conv, use_bias=False, kernel_init=conv_kernel_init, dtype=self.dtype)
        norm = batch_norm(train, self.dtype, self.bn_sync, self.bn_group_size)
        if self.imagenet_stem:
            x = conv(self.width, (7, 7), 2, padding=3, name="conv1")(x)
        else:
            x = conv(self.width, (3, 3), 1, padding=1, name="conv1")(x)
        x = nn.relu(norm(name="bn1")(x))
        if self.imagenet_stem:
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for i, num_blocks in enumerate(self.stage_sizes):
            for j in range(num_blocks):
                strides = 2 if i > 0 and j == 0 else 1
                x = self.block_cls(self.width * 2**i, strides, conv, norm, name=f"layer{i + 1}_{j}")(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x).astype(jnp.float32)


def _register(name: str, stage_sizes: Sequence[int], block_cls: type[nn.Module], imagenet_stem: bool) -> None:
    @register_model(name)
    def factory(model_config, num_classes: int) -> ResNet:
        return ResNet(tuple(stage_sizes), block_cls, num_classes, model_config.width or ResNet.width, imagenet_stem,
                      compute_dtype(model_config), model_config.bn_sync,
                      model_config.bn_group_size)


_register("resnet18_cifar", (2, 2, 2, 2), BasicBlock, imagenet_stem=False)
_register("resnet34_cifar", (3, 4, 6, 3), BasicBlock, imagenet_stem=False)
_register("resnet18_imagenet", (2, 2, 2, 2), BasicBlock, imagenet_stem=True)
_register("resnet50_imagenet", (3, 4, 6, 3), BottleneckBlock, imagenet_stem=True)
