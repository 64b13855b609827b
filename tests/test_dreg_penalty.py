"""DReg penalties and the replicate / fold-back maps as pure functions: eager and jitted (chex.variants),
against float64 numpy, and the shape asserts that stop a mismatched W1, W2 from broadcasting."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from jaxlab.dreg import penalty as penalties
from jaxlab.dreg import replicate

SHAPES = {"dense": (6, 4), "conv": (3, 3, 2, 4)}


def _kernels(shape, sign=1.0, seed=0):
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=shape).astype(np.float32)
    return w1, (sign * w1 + rng.normal(size=shape)).astype(np.float32)


def _cos(a, b):
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def _reference(variant, w1, w2):
    """The penalty's value in float64 numpy."""
    a, b = w1.astype(np.float64), w2.astype(np.float64)
    if variant == "per_unit_squared_cosine":
        a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        return np.mean([_cos(a2[:, j], b2[:, j]) ** 2 for j in range(a2.shape[1])])
    if variant == "negative_squared_distance":
        return -np.sum((a - b) ** 2)
    cos = _cos(a.ravel(), b.ravel())
    return {"squared_cosine": cos**2, "cosine": cos, "hinge_cosine": max(cos, 0.0)}[variant]


PENALTY_FUNCTIONS = {
    "squared_cosine": penalties.squared_cosine,
    "per_unit_squared_cosine": penalties.per_unit_squared_cosine,
    "cosine": penalties.cosine,
    "hinge_cosine": penalties.hinge_cosine,
    "negative_squared_distance": penalties.negative_squared_distance,
}


class PenaltyTest(chex.TestCase):

    def test_every_registered_penalty_is_covered(self):
        assert set(PENALTY_FUNCTIONS) == set(penalties.PENALTIES)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(variant=sorted(PENALTY_FUNCTIONS), shape=sorted(SHAPES), sign=(1.0, -1.0))
    def test_value_matches_numpy(self, variant, shape, sign):
        w1, w2 = _kernels(SHAPES[shape], sign)
        value = self.variant(PENALTY_FUNCTIONS[variant])(jnp.asarray(w1), jnp.asarray(w2))
        chex.assert_shape(value, ())
        chex.assert_trees_all_close(value, _reference(variant, w1, w2), rtol=1e-5, atol=1e-7)

    @chex.variants(with_jit=True, without_jit=True)
    def test_cosines_are_scale_invariant_and_symmetric(self):
        w1, w2 = (jnp.asarray(w) for w in _kernels(SHAPES["conv"]))
        for name in ("squared_cosine", "per_unit_squared_cosine", "cosine", "hinge_cosine"):
            fn = self.variant(PENALTY_FUNCTIONS[name])
            chex.assert_trees_all_close(fn(3.0 * w1, 0.5 * w2), fn(w1, w2), fn(w2, w1), rtol=1e-5, atol=1e-7)
        # orthogonal and opposite copies: the hinge is 0 on both, the squared cosine 0 and 1
        ortho = jnp.asarray([[1.0, 0.0], [0.0, 0.0]]), jnp.asarray([[0.0, 1.0], [0.0, 0.0]])
        chex.assert_trees_all_close(
            [self.variant(penalties.hinge_cosine)(*ortho), self.variant(penalties.hinge_cosine)(w1, -w1),
             self.variant(penalties.squared_cosine)(*ortho), self.variant(penalties.squared_cosine)(w1, -w1)],
            [0.0, 0.0, 0.0, 1.0], rtol=1e-6, atol=1e-7)

    @chex.variants(with_jit=True, without_jit=True)
    def test_gradients_vanish_at_identical_copies(self):
        w = jnp.asarray(_kernels(SHAPES["conv"])[0])
        for name in ("squared_cosine", "per_unit_squared_cosine", "cosine", "hinge_cosine"):
            grads = self.variant(jax.grad(PENALTY_FUNCTIONS[name], argnums=(0, 1)))(w, w)
            chex.assert_trees_all_equal_shapes(grads, (w, w))
            chex.assert_trees_all_close(grads, jax.tree.map(jnp.zeros_like, grads), atol=1e-6)


class ReplicateTest(chex.TestCase):
    """replicate_params / fold_back on a hand-made parameter tree (no model)."""

    @staticmethod
    def _params(seed):
        rng = np.random.default_rng(seed)
        return {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), "bias": jnp.ones(3)},
                "Dense_1": {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "bias": jnp.zeros(2)}}

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(combine=("sum", "mean"), init=replicate.INITS)
    def test_fold_back_of_replicate(self, combine, init):
        plain, copy = self._params(0), self._params(1)
        c = replicate.COMBINES[combine]
        rep = self.variant(lambda p, q: replicate.replicate_params(p, q, "params/Dense_1", combine, init))(
            plain, copy)
        w1, w2 = replicate.replicated_kernels(rep, "Dense_1")
        chex.assert_equal_shape([w1, w2, plain["Dense_1"]["kernel"]])
        assert sorted(rep["Dense_1"]) == ["bias", "kernel_1", "kernel_2"]
        chex.assert_trees_all_equal(rep["Dense_0"], plain["Dense_0"])  # other layers untouched
        chex.assert_trees_all_equal(rep["Dense_1"]["bias"], plain["Dense_1"]["bias"])
        scale = {"independent": 1.0, "variance_preserving": 1 / (c * np.sqrt(2.0)), "split": 1 / (2 * c)}[init]
        partner = plain if init == "split" else copy
        chex.assert_trees_all_close((w1, w2), (scale * plain["Dense_1"]["kernel"],
                                               scale * partner["Dense_1"]["kernel"]), rtol=1e-6)
        folded = self.variant(lambda p: replicate.fold_back(p, "Dense_1", combine))(rep)
        chex.assert_trees_all_equal_shapes(folded, plain)
        if init == "split":  # the exact plain model
            chex.assert_trees_all_close(folded, plain, rtol=1e-6)
        else:
            expected = c * scale * (plain["Dense_1"]["kernel"] + copy["Dense_1"]["kernel"])
            chex.assert_trees_all_close(folded["Dense_1"]["kernel"], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fn", list(PENALTY_FUNCTIONS.values()), ids=list(PENALTY_FUNCTIONS))
def test_penalties_reject_mismatched_kernels(fn):
    """(6, 4) against (1, 4) or (4,) would broadcast; chex raises instead, eagerly and under jit."""
    w = jnp.ones((6, 4))
    for other in (jnp.ones((1, 4)), jnp.ones(4)):
        with pytest.raises(AssertionError):
            fn(w, other)
        with pytest.raises(AssertionError):
            jax.jit(fn)(other, w)


def test_per_unit_penalty_needs_a_kernel():
    """A rank-1 vector has no (fan-in, units) split: every 'unit' would be one weight with cosine +-1."""
    with pytest.raises(AssertionError):
        penalties.per_unit_squared_cosine(jnp.ones(4), jnp.ones(4))


def test_replicate_and_fold_back_reject_mismatched_kernels():
    params = ReplicateTest._params(0)
    other = {**params, "Dense_1": {"kernel": jnp.ones((3, 1)), "bias": jnp.zeros(2)}}
    with pytest.raises(AssertionError):
        replicate.replicate_params(params, other, "Dense_1")
    bad = {**params, "Dense_1": {"kernel_1": jnp.ones((3, 2)), "kernel_2": jnp.ones((1, 2)), "bias": jnp.zeros(2)}}
    with pytest.raises(AssertionError):
        replicate.fold_back(bad, "Dense_1")
