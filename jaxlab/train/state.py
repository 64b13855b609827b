"""The training state: one pytree, replicated on every device, checkpointed whole."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32 scalar: number of updates applied
    params: Any
    batch_stats: Any         # BatchNorm running averages ({} for models without BN)
    opt_state: Any
    rng: jax.Array           # raw uint32[2] key; step keys are fold_in(rng, step)


def create_train_state(seed: int, model, tx: optax.GradientTransformation,
                       input_shape: tuple[int, ...], initial_variables: dict | None = None) -> TrainState:
    """Initialise params from `seed` (host-side, identical on every host), or start from
    `initial_variables` ({"params": ..., optionally "batch_stats": ...}, e.g. a trained model to adapt);
    the training key comes from `seed` either way."""
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed))
    variables = jax.jit(lambda r: model.init(r, jnp.zeros((1, *input_shape), jnp.float32), train=False))(init_rng)
    if initial_variables is not None:
        shapes = lambda tree: jax.tree.map(jnp.shape, tree)  # noqa: E731
        if shapes(initial_variables["params"]) != shapes(variables["params"]):
            raise ValueError("initial_variables['params'] do not match the model's parameters: got "
                             f"{shapes(initial_variables['params'])}, the model has {shapes(variables['params'])}")
        variables = {**variables, **initial_variables}
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=train_rng,
    )
