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
                       input_shape: tuple[int, ...]) -> TrainState:
    """Initialise params from `seed` (host-side, identical on every host)."""
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed))
    variables = jax.jit(lambda r: model.init(r, jnp.zeros((1, *input_shape), jnp.float32), train=False))(init_rng)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=train_rng,
    )
