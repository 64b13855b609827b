"""The model registry: `config.model.name` -> factory(model_config, num_classes) -> nn.Module."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.errors import ConfigError
from jaxlab.registry import Registry

Factory = Callable[..., nn.Module]

MODELS = Registry("model", "model.name")
register_model = MODELS.register  # `@register_model("mlp")` makes `create_model` build that factory's module

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(model_config):
    """`config.model.dtype` as a jnp dtype (the compute dtype; params stay float32)."""
    if model_config.dtype not in _DTYPES:
        raise ConfigError("model.dtype", f"{model_config.dtype!r} is not one of {sorted(_DTYPES)}")
    return _DTYPES[model_config.dtype]


def create_model(model_config, num_classes: int) -> nn.Module:
    """The module named by `config.model.name`, built from `config.model`."""
    return MODELS.lookup(model_config.name)(model_config, num_classes)
