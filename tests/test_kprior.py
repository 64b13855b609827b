"""K-priors on small GLMs in float64: exact gradient reconstruction with M = D, every adaptation
task converging to its retrained solution, and lambda memories beating low-lambda ones."""
import functools
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import kprior
from jaxlab.models.glm import polynomial_features
from jaxlab.models.mlp import MLP

DELTA = 1.0
NUM_INPUTS = 4
SOLVE = dict(method="newton", tol=1e-12, max_steps=50)


@pytest.fixture(scope="module", autouse=True)
def float64():
    """x64 for this module only (restored afterwards, so other modules keep float32)."""
    previous = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def glm(params, inputs):
    """f_w(x) = [1, x]^T w = polynomial_features(x, 1)^T w (jaxlab's GLM module computes in float32;
    plain jnp keeps float64, and the concatenation compiles faster than the general features)."""
    return jnp.concatenate([jnp.ones_like(inputs[:, :1]), inputs], axis=1) @ params


def glm2(params, inputs):
    """Degree-2 GLM; its first 1 + NUM_INPUTS features are glm's."""
    return linear(params, polynomial_features(inputs, 2))


def linear(params, features):
    return features @ params


def num_features(degree):
    return polynomial_features(jnp.zeros((1, NUM_INPUTS)), degree).shape[1]


def make_data(seed, n, loss):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(n, NUM_INPUTS))
    score = inputs @ np.array([1.5, -1.0, 0.5, 0.0]) + 0.5 * rng.normal(size=n)
    labels = (score > 0).astype(np.int64)
    targets = {"softmax": np.eye(2)[labels], "sigmoid": labels[:, None] * 1.0, "squared": score[:, None]}[loss.name]
    return jnp.asarray(inputs), jnp.asarray(targets), labels


def fit(apply_fn, inputs, targets, loss, delta=DELTA, degree=1):
    start = jnp.zeros((num_features(degree), targets.shape[1]))
    return kprior.minimize(kprior.regularised_loss, start, apply_fn, inputs, targets, delta, loss, **SOLVE)


def random_params(seed, like, scale=1.0, count=None):
    """N(0, scale^2) params shaped like `like`, or `count` of them stacked."""
    shape = like.shape if count is None else (count, *like.shape)
    return scale * jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def relative_gradient_errors(objective, reference, points):
    """gradient_error(...).relative at each of the stacked points, in one compiled call."""
    return jax.jit(jax.vmap(lambda w: kprior.gradient_error(objective, reference, w).relative))(points)


def call(params, objective):
    """objective(params), for minimize with a pytree objective (a KPrior) passed as data."""
    return objective(params)


@pytest.fixture(scope="module")
def base(float64):
    inputs, targets, labels = make_data(0, 40, kprior.SOFTMAX)
    return inputs, targets, labels, fit(glm, inputs, targets, kprior.SOFTMAX)


# ---------------------------------------------------------------- the prior


@pytest.mark.parametrize("loss", [kprior.SOFTMAX, kprior.SIGMOID, kprior.SQUARED], ids=lambda loss: loss.name)
def test_kprior_gradient(float64, loss):
    """jax.grad K(w) = Phi^T (h(Phi w) - h(Phi w*)) + delta (w - w*) (the official code's gradient), and with
    w* = argmin Lbar and M = D it equals grad Lbar(w) at any w (GLM)."""
    inputs, targets, _ = make_data(0, 40, loss)
    w_star = fit(glm, inputs, targets, loss)
    prior = kprior.make_kprior(glm, w_star, inputs, DELTA, loss)
    past = functools.partial(kprior.regularised_loss, apply_fn=glm, inputs=inputs, targets=targets, delta=DELTA,
                             loss=loss)

    @jax.jit
    def check(points):
        features = jnp.concatenate([jnp.ones_like(inputs[:, :1]), inputs], axis=1)
        formula = jax.vmap(lambda w: features.T @ (loss.inverse_link(features @ w) - prior.anchor_predictions)
                           + DELTA * (w - w_star))(points)
        return jax.vmap(jax.grad(prior))(points), formula, relative_gradient_errors(prior, past, points)

    grads, formula, errors = check(random_params(1, w_star, count=3))
    np.testing.assert_allclose(grads, formula, rtol=1e-12, atol=1e-12)
    assert np.all(errors < 1e-8), (loss.name, errors)


class PureFunctionsTest(chex.TestCase):
    """kprior_loss and the task objectives against their formulas, jitted and not (chex variants)."""

    def setUp(self):
        super().setUp()
        inputs, targets, _ = make_data(0, 12, kprior.SOFTMAX)
        self.inputs, self.targets = inputs, targets
        self.w_star = random_params(1, jnp.zeros((1 + NUM_INPUTS, 2)))
        self.w = random_params(2, self.w_star)
        self.prior = kprior.make_kprior(glm, self.w_star, inputs, DELTA)

    def soft_fit(self, w):
        """sum_m l(h(f_{w*}(x_m)), f_w(x_m)) written out: -sum_m <softmax(f_{w*}), log softmax(f_w)>."""
        soft = jax.nn.softmax(glm(self.w_star, self.inputs))
        return -jnp.sum(soft * jax.nn.log_softmax(glm(w, self.inputs)))

    @chex.variants(with_jit=True, without_jit=True)
    def test_kprior_loss_is_the_soft_label_fit_plus_the_weight_term(self):
        loss = self.variant(lambda w, anchor: kprior.kprior_loss(w, glm, self.inputs, self.prior.anchor_predictions,
                                                                  anchor, DELTA))
        value = loss(self.w, self.w_star)
        chex.assert_shape(value, ())
        expected = self.soft_fit(self.w) + 0.5 * DELTA * jnp.sum((self.w - self.w_star) ** 2)
        np.testing.assert_allclose(value, expected, rtol=1e-12)
        no_anchor = self.variant(lambda w: kprior.kprior_loss(w, glm, self.inputs, self.prior.anchor_predictions,
                                                              None, DELTA))
        np.testing.assert_allclose(no_anchor(self.w), self.soft_fit(self.w) + 0.5 * DELTA * jnp.sum(self.w ** 2),
                                   rtol=1e-12)

    @chex.variants(with_jit=True, without_jit=True)
    def test_task_objectives_are_their_formulas(self):
        prior, w, new_x, new_y = self.prior, self.w, self.inputs[:3] + 1.0, self.targets[:3]
        fit = lambda x, y: -jnp.sum(y * jax.nn.log_softmax(glm(w, x)))  # noqa: E731
        k_value = self.soft_fit(w) + 0.5 * DELTA * jnp.sum((w - self.w_star) ** 2)
        add = self.variant(kprior.add_data)(w, prior, new_x, new_y)
        remove = self.variant(kprior.remove_data)(w, prior, self.inputs[:2], self.targets[:2])
        regulariser = self.variant(kprior.change_regulariser)(w, prior, 3.0)
        replay = self.variant(functools.partial(kprior.replay, apply_fn=glm))(
            w, memory_inputs=self.inputs, memory_targets=self.targets, delta=DELTA)
        chex.assert_shape([add, remove, regulariser, replay], ())
        np.testing.assert_allclose(add, k_value + fit(new_x, new_y), rtol=1e-12)
        np.testing.assert_allclose(remove, k_value - fit(self.inputs[:2], self.targets[:2]), rtol=1e-12)
        np.testing.assert_allclose(regulariser, k_value + 0.5 * (3.0 - DELTA) * jnp.sum(w ** 2), rtol=1e-12)
        np.testing.assert_allclose(replay, fit(self.inputs, self.targets) + 0.5 * DELTA * jnp.sum(w ** 2),
                                   rtol=1e-12)

    def test_targets_of_another_shape_than_the_outputs_are_an_error(self):
        """(N,) targets against (N, 1) outputs would broadcast to (N, N) in the loss: refused instead."""
        with self.assertRaises(AssertionError):
            kprior.squared_error(jnp.zeros(5), jnp.zeros((5, 1)))
        with self.assertRaises(AssertionError):
            kprior.data_loss(self.w, glm, self.inputs, self.targets[:, 0])


def test_lbfgs_with_the_official_rescaling_reaches_the_newton_solution(base):
    """minimize's default L-BFGS (zoom line search) on Lbar / N: ||grad Lbar|| <= N tol, so within N tol / delta."""
    inputs, targets, _, w_star = base
    solution = kprior.minimize(kprior.regularised_loss, jnp.zeros_like(w_star), glm, inputs, targets, DELTA,
                               tol=1e-11, scale=inputs.shape[0])
    np.testing.assert_allclose(solution, w_star, atol=inputs.shape[0] * 1e-11 / DELTA)


def mlp_params(seed, sizes):
    """Flax MLP variables drawn with numpy (no jax.random: its compilation is slow on CPU)."""
    rng = np.random.default_rng(seed)
    return {"params": {f"Dense_{i}": {"kernel": rng.normal(size=(n_in, n_out)) / np.sqrt(n_in),
                                      "bias": rng.normal(size=n_out)}
                       for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))}}


def test_network_kprior_gradient_is_jacobian_transpose_residual(float64):
    """Flax MLP, no weight term: grad = J^T (h(f_theta) - soft labels) + delta theta; KPrior passes through jit."""
    model = MLP(2, (8,))  # computes in float32
    inputs, _, _ = make_data(5, 16, kprior.SOFTMAX)
    teacher, student = mlp_params(0, (NUM_INPUTS, 8, 2)), mlp_params(1, (NUM_INPUTS, 8, 2))
    prior = kprior.make_kprior(model.apply, teacher, inputs, DELTA, weight_term=False)

    @jax.jit
    def grad_and_formula(student, prior):
        outputs, vjp = jax.vjp(lambda params: model.apply(params, inputs), student)
        (residual_grad,) = vjp(jax.nn.softmax(outputs) - prior.anchor_predictions)
        return jax.grad(call)(student, prior), jax.tree.map(lambda g, p: g + DELTA * p, residual_grad, student)

    grad, expected = grad_and_formula(student, prior)
    chex.assert_trees_all_close(grad, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- adaptation tasks, M = D


def make_task(name, base):
    """(objective, args, retraining data (inputs, targets, delta), start) of one task with M = D;
    the K-prior objective is objective(w, *args), the retraining one regularised_loss on the GLM."""
    inputs, targets, _, w_star = base
    prior = kprior.make_kprior(glm, w_star, inputs, DELTA)
    if name == "add_data":
        new_inputs, new_targets, _ = make_data(6, 10, kprior.SOFTMAX)
        retrain = (jnp.concatenate([inputs, new_inputs]), jnp.concatenate([targets, new_targets]), DELTA)
        return kprior.add_data, (prior, new_inputs, new_targets), retrain, w_star
    if name == "remove_data":
        return kprior.remove_data, (prior, inputs[:6], targets[:6]), (inputs[6:], targets[6:], DELTA), w_star
    if name == "change_regulariser":
        return kprior.change_regulariser, (prior, 5.0), (inputs, targets, 5.0), w_star
    assert name == "change_model"  # GLM degree 2 -> 1, P keeps the weights of the shared features
    w_star2 = fit(linear, polynomial_features(inputs, 2), targets, kprior.SOFTMAX, degree=2)  # = argmin for glm2
    prior = kprior.change_model_prior(glm2, w_star2, glm, inputs, DELTA,
                                      projection=kprior.polynomial_projection(NUM_INPUTS, 1))
    return call, (prior,), (inputs, targets, DELTA), jnp.zeros_like(w_star)


TASKS = ["add_data", "remove_data", "change_regulariser", "change_model"]


@jax.jit
def retraining_gradient_norm(inputs, targets, delta, params):
    """||grad R(w)|| of the retraining objective R = regularised_loss; R is delta-strongly convex, so
    ||w - argmin R|| <= ||grad R(w)|| / delta (a certificate that w is the retrained solution)."""
    grad = jax.grad(kprior.regularised_loss)(params, glm, inputs, targets, delta)
    return jnp.linalg.norm(grad)


@pytest.mark.parametrize("name", TASKS)
def test_task_has_the_retraining_gradient_and_solution(base, name):
    """M = D: relative gradient error < 1e-8 at random w, and minimising the K-prior objective lands
    within 1e-10 of the retrained solution (||grad R|| <= 1e-10 delta at the K-prior solution)."""
    objective, args, (inputs, targets, delta), start = make_task(name, base)
    adapted = kprior.minimize(objective, start, *args, **SOLVE)

    @jax.jit
    def check(points, adapted):
        retrain = functools.partial(kprior.regularised_loss, apply_fn=glm, inputs=inputs, targets=targets,
                                    delta=delta)
        errors = relative_gradient_errors(lambda w: objective(w, *args), retrain, points)
        return errors, retraining_gradient_norm(inputs, targets, delta, adapted)

    errors, distance_bound = check(random_params(0, start, count=3), adapted)
    assert np.all(errors < 1e-8), (name, errors)
    assert distance_bound < 1e-10 * delta, (name, distance_bound)


def test_replay_with_full_memory_is_batch(base):
    inputs, targets, _, w_star = base
    new_inputs, new_targets, _ = make_data(6, 10, kprior.SOFTMAX)

    @jax.jit
    def replay_and_batch(w):
        batch = kprior.regularised_loss(w, glm, jnp.concatenate([inputs, new_inputs]),
                                        jnp.concatenate([targets, new_targets]), DELTA)
        return kprior.replay(w, glm, inputs, targets, DELTA, new_inputs=new_inputs, new_targets=new_targets), batch

    np.testing.assert_allclose(*replay_and_batch(random_params(0, w_star)), rtol=1e-12)


def test_continual_learning_with_full_memory_matches_batch_training(float64):
    """Two tasks, every point kept: the K-prior chain reaches argmin of Lbar on D1 u D2 (within
    1e-10, see retraining_gradient_norm). Task sizes match the tests above: their compiled solvers
    are reused."""
    tasks = [make_data(7, 40, kprior.SOFTMAX), make_data(8, 10, kprior.SOFTMAX)]
    history, prior = kprior.continual_learning(tasks, jnp.zeros((num_features(1), 2)), glm, DELTA,
                                               memory_per_task=40, selection="all", **SOLVE)
    assert len(history) == 2 and prior.memory_size == 50
    inputs, targets = (jnp.concatenate([task[i] for task in tasks]) for i in (0, 1))
    assert retraining_gradient_norm(inputs, targets, DELTA, history[-1]) < 1e-10 * DELTA


# ---------------------------------------------------------------- subset memory


def test_lambda_memory_reconstructs_the_gradient_better_than_low_lambda_memory(base):
    """The error ~ sum_{i not in M} lambda_i phi_i phi_i^T (w - w*) is smaller when M keeps the largest lambda."""
    inputs, targets, labels, w_star = base
    past = functools.partial(kprior.regularised_loss, apply_fn=glm, inputs=inputs, targets=targets, delta=DELTA)
    scores = kprior.memory_scores(glm(w_star, inputs))
    memories = np.stack([kprior.select_memory(labels, 12, "lambda", scores=scores, largest=largest)
                         for largest in (True, False)])
    points = w_star + random_params(0, w_star, 0.3, count=4)

    @jax.jit
    @functools.partial(jax.vmap, in_axes=(0, None))
    def errors(memory, points):
        prior = kprior.make_kprior(glm, w_star, inputs[memory], DELTA)
        return relative_gradient_errors(prior, past, points)

    highest, lowest = errors(memories, points)
    assert np.all(highest < lowest), (highest, lowest)


# ---------------------------------------------------------------- the Newton solver


def test_newton_is_damped_from_a_saturated_start(base):
    """Far from the optimum the logits saturate, the Hessian is nearly delta alone and full Newton steps
    overshoot (undamped, 50 steps from this start ended 13.9 away from w*); the step length search on ||grad||
    reaches w*."""
    inputs, targets, _, w_star = base
    start = random_params(3, w_star, 30.0)
    solution = kprior.minimize(kprior.regularised_loss, start, glm, inputs, targets, DELTA, **SOLVE)
    assert np.all(np.isfinite(solution))
    np.testing.assert_allclose(solution, w_star, atol=1e-10)


def test_newton_converges_in_float32_when_the_objective_value_dwarfs_its_gradient(base):
    """Change of regulariser 50 -> 5 on a 4-point memory, rescaled by |M| as the experiments do: the value is
    dominated by -delta <w*, w> / |M| (-3.9 here, against a gradient tolerance of 1e-6), the regime where float32
    rounding of the VALUE hides the last decreases (it stalled L-BFGS's line search on USPS at 20-5% memory).
    Newton uses gradients only: in float32 it lands on the float64 solution."""
    inputs, targets, labels, _ = base
    w_star = fit(glm, inputs, targets, kprior.SOFTMAX, delta=50.0)
    memory = kprior.select_memory(labels, 4, "lambda", scores=kprior.memory_scores(glm(w_star, inputs)))
    solutions = []
    for dtype in (jnp.float64, jnp.float32):
        prior = kprior.make_kprior(glm, w_star.astype(dtype), inputs[memory].astype(dtype), 50.0)
        solution = kprior.minimize(kprior.change_regulariser, w_star.astype(dtype), prior, 5.0, method="newton",
                                   tol=1e-6, max_steps=50, scale=4.0)
        assert solution.dtype == dtype
        solutions.append(solution)
    np.testing.assert_allclose(np.asarray(solutions[1], np.float64), solutions[0], rtol=1e-4, atol=1e-4)


def test_newton_stops_at_the_gradient_rounding_floor_instead_of_idling(base):
    """Float32, tol 0 (unreachable): once no step lowers ||grad|| any more, Newton stops (SolveInfo.steps far under
    max_steps) at the float64 solution. Before the strict decrease test, a step too small to change w had the same
    gradient, passed `<=` once (1 - 2e-4 t) rounded to 1, and the loop idled to max_steps (Adult change_regulariser:
    26 s instead of 3 s)."""
    inputs, targets, labels, _ = base
    w_star = fit(glm, inputs, targets, kprior.SOFTMAX, delta=50.0)
    memory = kprior.select_memory(labels, 4, "lambda", scores=kprior.memory_scores(glm(w_star, inputs)))
    prior = kprior.make_kprior(glm, w_star, inputs[memory], 50.0)
    exact = kprior.minimize(kprior.change_regulariser, w_star, prior, 5.0, method="newton", tol=1e-12, scale=4.0)
    prior32 = kprior.make_kprior(glm, w_star.astype(jnp.float32), inputs[memory].astype(jnp.float32), 50.0)
    solution, info = kprior.minimize(kprior.change_regulariser, w_star.astype(jnp.float32), prior32, 5.0,
                                     method="newton", tol=0.0, max_steps=1000, scale=4.0, with_info=True)
    assert int(info.steps) < 50, int(info.steps)
    assert 0 < float(info.grad_norm) < 1e-4
    np.testing.assert_allclose(np.asarray(solution, np.float64), exact, rtol=1e-4, atol=1e-4)


def test_minimize_reports_its_steps_and_final_gradient(base):
    """with_info: L-BFGS and Newton both report ||grad|| <= tol when they converge, and the step cap when they
    hit it."""
    inputs, targets, _, w_star = base
    start = jnp.zeros_like(w_star)
    for method in ("lbfgs", "newton"):
        solution, info = kprior.minimize(kprior.regularised_loss, start, glm, inputs, targets, DELTA, method=method,
                                         tol=1e-8, max_steps=500, scale=len(inputs), with_info=True)
        assert 0 < int(info.steps) < 500 and float(info.grad_norm) <= 1e-8, (method, info)
        np.testing.assert_allclose(solution, w_star, atol=1e-6)
        with pytest.warns(RuntimeWarning, match="stopped at max_steps=1"):
            _, capped = kprior.minimize(kprior.regularised_loss, start, glm, inputs, targets, DELTA, method=method,
                                        tol=0.0, max_steps=1, scale=len(inputs), with_info=True)
        assert int(capped.steps) == 1 and float(capped.grad_norm) > 1e-8, (method, capped)


def test_minimize_default_tolerance_is_reachable_in_float32_and_a_capped_solve_warns():
    """The default tolerance is relative to the starting gradient and reachable in float32: L-BFGS on a GLM stops
    well before max_steps, silently; a solve that max_steps ends says so."""
    with jax.enable_x64(False):  # this module runs in float64; the default is checked in float32
        rng = np.random.default_rng(0)
        inputs = jnp.asarray(rng.normal(size=(200, 5)), jnp.float32)
        targets = jax.nn.one_hot(jnp.asarray(rng.integers(0, 2, 200)), 2)
        start = jnp.zeros((6, 2), jnp.float32)  # bias + 5 features
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _, info = kprior.minimize(kprior.regularised_loss, start, glm, inputs, targets, DELTA, scale=200.0,
                                      max_steps=1000, with_info=True)
        assert int(info.steps) < 1000
        objective = lambda w: kprior.regularised_loss(w, glm, inputs, targets, DELTA) / 200.0  # noqa: E731
        g0 = float(optax.tree.norm(jax.grad(objective)(start)))
        assert float(info.grad_norm) <= np.sqrt(np.finfo(np.float32).eps) * max(1.0, g0)
        with pytest.warns(RuntimeWarning, match="stopped at max_steps=2"):
            kprior.minimize(kprior.regularised_loss, start, glm, inputs, targets, DELTA, scale=200.0, max_steps=2)
