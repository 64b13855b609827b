"""Multinomial logistic regression on polynomial features (a GLM with softmax link).

K-priors (Khan & Swaroop, NeurIPS 2021) use it as "bias + 123 features, 2-output linear
softmax, zero init" on Adult; `polynomial_degree` > 1 gives a polynomial-feature GLM.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.models.layers import flatten
from jaxlab.models.registry import compute_dtype, register_model


@functools.lru_cache(maxsize=None)
def _monomial_indices(num_features: int, degree: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """For d = 1..degree, (first, rest) with block_d = x[:, first] * block_{d-1}[:, rest].

    block_d holds the degree-d monomials x_{i1} ... x_{id}, i1 <= ... <= id, in
    itertools.combinations_with_replacement order (sklearn's PolynomialFeatures order);
    block_0 is the bias column.
    """
    indices, previous = [], {(): 0}
    for d in range(1, degree + 1):
        terms = list(itertools.combinations_with_replacement(range(num_features), d))
        indices.append((np.array([t[0] for t in terms], np.int32),
                        np.array([previous[t[1:]] for t in terms], np.int32)))
        previous = {t: j for j, t in enumerate(terms)}
    return tuple(indices)


def polynomial_features(x: jax.Array, degree: int) -> jax.Array:
    """[1, x_i, x_i x_j (i <= j), ...] up to `degree` of the flattened input: (B, C(D + degree, degree)).

    Same columns, same order as sklearn.preprocessing.PolynomialFeatures(degree, include_bias=True).
    """
    x = flatten(x)
    block = jnp.ones((x.shape[0], 1), x.dtype)
    blocks = [block]
    for first, rest in _monomial_indices(x.shape[1], degree):
        block = x[:, first] * block[:, rest]
        blocks.append(block)
    return jnp.concatenate(blocks, axis=1)


class GLM(nn.Module):
    """logits = polynomial_features(x, degree) @ W, W zero-initialised (the bias is feature 0)."""

    num_classes: int
    degree: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        features = polynomial_features(x, self.degree)
        logits = nn.Dense(self.num_classes, use_bias=False, kernel_init=nn.initializers.zeros,
                          dtype=self.dtype)(features)
        return logits.astype(jnp.float32)


@register_model("glm")
def _glm(model_config, num_classes: int) -> GLM:
    return GLM(num_classes, model_config.polynomial_degree, compute_dtype(model_config))
