"""Replicate one Dense or Conv layer of any model: the DReg "trigger layer" (Yuan et al. 2020).

The target layer y = x * W + b (a matmul for Dense, a convolution for Conv) gets two kernels
W1, W2, combined as

    y = c (x * W1 + x * W2) + b = x * [c (W1 + W2)] + b,    c = 1 ("sum") or 1/2 ("mean").

Both layers are linear in the kernel, so running the layer twice and adding the outputs is
exactly running it once on c (W1 + W2): `Replicated` does the latter (the overhead is one
kernel-sized add, not a second layer), and the same function, `fold_back`, exports a
DReg-trained model as the plain architecture. The gradients are dL/dW1 = dL/dW2 = c dL/dW,
so SGD moves the combined kernel by 2c times the plain step: "sum" doubles the layer's
effective learning rate, "mean" halves it (the B1 control matches that).

"two_heads" (two classifier heads whose logits are averaged) is "mean" on the final Dense,
by the same linearity; on an inner layer it would mean duplicating the whole network above
the layer, which this transform does not do, so it is accepted for the final Dense only.

Bias: the layer keeps ONE bias b. The penalty acts on kernels only, and a second bias would
only add a direction that nothing distinguishes from the first.

Initialisation (W is the plain model's kernel at the same seed, W' an independent draw
from the layer's own initializer; the rest of the model equals the plain model's init):
- "independent" (default): W1 = W, W2 = W'. Independent draws are required for a cosine
  penalty: at W1 = W2 its gradient is zero and the task gradients of both copies are equal,
  so exact clones never separate. The combined kernel has 2 c^2 times the plain variance.
- "variance_preserving": W1 = s W, W2 = s W' with s = 1 / (c sqrt 2) (1/sqrt 2 under sum),
  so c (W1 + W2) has the plain layer's initial variance.
- "split": W1 = W2 = W / (2c) ((W/2, W/2) under sum): the model is exactly the plain model
  (tests, the lambda = 0 control), but a cosine penalty can never separate the copies.

Why a penalty on W1 - W2 does nothing under sum/mean: the function depends on W1 + W2 only;
the task gradients of the copies are equal and a penalty f(W1 - W2) has equal and opposite
gradients, so W1 + W2 follows the plain trajectory (SGD, momentum, L2 decay) while W1 - W2
drifts, without bound for -||W1 - W2||^2. Only scale-invariant penalties (cosines) couple
the two.

The matched single layer (control B1, `Matched`): no copy; the layer's kernel is
reparametrised as W = s V with s = sqrt(2) c, V the trained parameter. Then dW = s^2 dV-steps:
under SGD / momentum with coupled L2 decay wd, V <- V - eta (s dL/dW + wd V) gives
W <- W - eta (2 c^2 dL/dW + wd W), exactly the update of c (W1 + W2) when lambda = 0:
W1, W2 <- Wi - eta (c dL/dW + wd Wi), summed times c. "Matched" therefore means: the same
effective learning rate (2 c^2 eta), the same weight-decay rate, and the same initial
variance of the combined kernel (V starts at the plain draw times r / s, where r is the
initial std of c (W1 + W2) relative to the plain init: sqrt(2) c for "independent", 1 for
"variance_preserving" and "split"). Only the initial draw differs from the copies with
lambda = 0 (control B2), so B1 and B2 follow the same dynamics in distribution; with a
per-parameter adaptive optimiser (LARS, Adam) the correspondence is not exact.

Paths: "/"-separated submodule names inside the "params" collection, as they appear in the
parameter tree, e.g. "Dense_1" (the MLP's classifier with one hidden layer), "fc" (a ResNet's
classifier), "layer1_0/conv1" (a conv inside a ResNet block); a leading "params/" is
accepted. The default is the last Dense the model calls (the classifier of every model in
the registry).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

COMBINES = {"sum": 1.0, "mean": 0.5, "two_heads": 0.5}  # c in W = c (W1 + W2)
INITS = ("independent", "variance_preserving", "split")
REPLICATED_KERNELS = ("kernel_1", "kernel_2")
_COPY_SALT = 0x4452  # the copy's init key is fold_in(params key, salt): the plain model's init is untouched

Path = str | Sequence[str]


def path_keys(path: Path) -> tuple[str, ...]:
    """"params/layer1_0/conv1", "layer1_0/conv1" or ("layer1_0", "conv1") -> ("layer1_0", "conv1")."""
    keys = tuple(path.strip("/").split("/")) if isinstance(path, str) else tuple(path)
    return keys[1:] if keys[:1] == ("params",) else keys


def linear_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, str]]:
    """(path, "Dense" | "Conv") of every Dense/Conv call of `model` on (1, *input_shape), in call order.

    Traced abstractly (jax.eval_shape): nothing is computed.
    """
    calls = []

    def record(call, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, (nn.Dense, nn.Conv)):
            calls.append(("/".join(context.module.path), type(context.module).__name__))
        return call(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape)), train=False))
    return calls


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"DReg {name} {value!r} is not one of {sorted(choices)}")


def _get(tree: dict, keys: tuple[str, ...]) -> Any:
    for key in keys:
        tree = tree[key]
    return tree


def _replace(tree: dict, keys: tuple[str, ...], value: Any) -> dict:
    """A copy of the nested dict `tree` with tree[k1]...[kn] = value (other branches shared)."""
    if not keys:
        return value
    return {**tree, keys[0]: _replace(tree[keys[0]], keys[1:], value)}


def replicate_params(params: dict, copy_params: dict | None, path: Path, combine: str = "sum",
                     init: str = "independent") -> dict:
    """Plain params -> replicated params: the layer at `path` gets kernel_1, kernel_2 (and keeps its bias).

    `copy_params` is an independent init of the same model (its kernel at `path` is W');
    unused (None allowed) for init="split".
    """
    _check_choice("combine", combine, COMBINES)
    _check_choice("init", init, INITS)
    keys, c = path_keys(path), COMBINES[combine]
    layer = dict(_get(params, keys))
    kernel = layer.pop("kernel")
    if init == "split":
        first = second = kernel / (2 * c)
    else:
        scale = 1.0 if init == "independent" else 1.0 / (c * math.sqrt(2.0))
        copy_kernel = _get(copy_params, keys)["kernel"]
        chex.assert_equal_shape([kernel, copy_kernel])  # W' must be a draw of the same layer
        first, second = scale * kernel, scale * copy_kernel
    return _replace(params, keys, {**layer, "kernel_1": first, "kernel_2": second})


def fold_back(params: dict, path: Path, combine: str = "sum") -> dict:
    """Replicated params -> the plain architecture's params: kernel = c (kernel_1 + kernel_2), same bias.

    Every combination folds (the layer is linear in its kernel); an unknown combination or a
    path that holds no replicated layer is an error.
    """
    _check_choice("combine", combine, COMBINES)
    keys = path_keys(path)
    layer = dict(_get(params, keys))
    if not all(k in layer for k in REPLICATED_KERNELS):
        raise ValueError(f"no replicated layer at {'/'.join(keys)!r}: its params are {sorted(layer)}")
    first, second = (layer.pop(k) for k in REPLICATED_KERNELS)
    chex.assert_equal_shape([first, second])  # a mismatch would broadcast in the sum
    return _replace(params, keys, {**layer, "kernel": COMBINES[combine] * (first + second)})


def replicated_kernels(params: dict, path: Path) -> tuple[jax.Array, jax.Array]:
    """(W1, W2) of the replicated layer at `path`."""
    layer = _get(params, path_keys(path))
    return layer["kernel_1"], layer["kernel_2"]


@dataclasses.dataclass(frozen=True)
class _Reparametrised:
    """`base` whose layer at `path` is stored in other parameters; `export` maps them back to the plain ones.

    Has the linen `init` / `apply` interface the trainer uses (create_train_state,
    make_train_step, make_eval_step): apply(variables) = base.apply(variables with params
    exported), so batch_stats, `mutable`, `rngs` and `train` pass through unchanged.
    """

    base: nn.Module
    path: str
    combine: str = "sum"
    init_mode: str = "independent"

    def export(self, params: dict) -> dict:
        raise NotImplementedError

    def apply(self, variables: dict, *args, **kwargs):
        return self.base.apply({**variables, "params": self.export(variables["params"])}, *args, **kwargs)


@dataclasses.dataclass(frozen=True)
class Replicated(_Reparametrised):
    """`base` with the layer at `path` replicated; build it with `replicate_model`."""

    def init(self, rngs, *args, **kwargs) -> dict:
        """The plain model's init at the same key, then the layer replicated (see the module docstring)."""
        rngs = dict(rngs) if isinstance(rngs, Mapping) else {"params": rngs}
        variables = dict(self.base.init(rngs, *args, **kwargs))
        copy_params = None
        if self.init_mode != "split":
            copy_rngs = {**rngs, "params": jax.random.fold_in(rngs["params"], _COPY_SALT)}
            copy_params = self.base.init(copy_rngs, *args, **kwargs)["params"]
        variables["params"] = replicate_params(variables["params"], copy_params, self.path, self.combine,
                                               self.init_mode)
        return variables

    def export(self, params: dict) -> dict:
        """The plain architecture's params (fold_back)."""
        return fold_back(params, self.path, self.combine)


def matched_scales(combine: str = "sum", init: str = "independent") -> tuple[float, float]:
    """(s, r) of the B1 control: W = s V with s = sqrt(2) c, and r = the initial std of c (W1 + W2)
    relative to the plain init (sqrt(2) c for "independent", else 1); see the module docstring."""
    _check_choice("combine", combine, COMBINES)
    _check_choice("init", init, INITS)
    s = math.sqrt(2.0) * COMBINES[combine]
    return s, s if init == "independent" else 1.0


@dataclasses.dataclass(frozen=True)
class Matched(_Reparametrised):
    """`base` with the layer at `path` reparametrised as W = s V (control B1): the single layer whose
    effective LR, weight decay and initial variance match the copies of `Replicated(base, path, combine,
    init_mode)` (matched_scales, module docstring). Same init / apply / export interface as Replicated."""

    def _scaled(self, params: dict, factor: float) -> dict:
        keys = path_keys(self.path)
        layer = _get(params, keys)
        return _replace(params, keys, {**layer, "kernel": factor * layer["kernel"]})

    def init(self, rngs, *args, **kwargs) -> dict:
        """The plain model's init, with V = (r / s) W at the layer (so s V has r times the plain std)."""
        variables = dict(self.base.init(rngs, *args, **kwargs))
        s, r = matched_scales(self.combine, self.init_mode)
        variables["params"] = self._scaled(variables["params"], r / s)
        return variables

    def export(self, params: dict) -> dict:
        """The plain architecture's params: kernel = s V."""
        return self._scaled(params, matched_scales(self.combine, self.init_mode)[0])


def target_layer(model: nn.Module, input_shape: tuple[int, ...], path: Path | None = None,
                 combine: str = "sum") -> str:
    """The "/"-joined path of the Dense/Conv that DReg replicates: `path` (default: the last Dense), checked
    by tracing `model` on (1, *input_shape): it must be a Dense or Conv the model calls, and "two_heads"
    must target the last Dense. A ValueError names the model's Dense/Conv layers otherwise."""
    layers = linear_layers(model, input_shape)
    dense = [p for p, kind in layers if kind == "Dense"]
    available = ", ".join(f"{p} ({kind})" for p, kind in layers)
    if path is None:
        if not dense:
            raise ValueError(f"{type(model).__name__} calls no Dense layer to default to; name one of: {available}")
        path = dense[-1]
    path = "/".join(path_keys(path))
    if path not in dict(layers):
        raise ValueError(f"{path!r} is not a Dense or Conv layer of {type(model).__name__}; "
                         f"its layers are: {available}")
    if combine == "two_heads" and path != (dense or [None])[-1]:
        raise ValueError(f"combine='two_heads' needs the final classifier (the last Dense), not {path!r}: "
                         "two heads on an inner layer would duplicate the network above it")
    return path


def replicate_model(model: nn.Module, input_shape: tuple[int, ...], path: Path | None = None,
                    combine: str = "sum", init: str = "independent", matched_single: bool = False
                    ) -> Replicated | Matched:
    """`model` with the Dense/Conv at `path` (default: its last Dense) replicated.

    `input_shape` (one example, e.g. (32, 32, 3)) is used to trace the model once and check
    that `path` names a Dense or Conv it calls, and that "two_heads" targets the last Dense.
    `matched_single`: return the B1 control `Matched` for these choices instead of the copies.
    """
    _check_choice("combine", combine, COMBINES)
    _check_choice("init", init, INITS)
    return (Matched if matched_single else Replicated)(model, target_layer(model, input_shape, path, combine),
                                                       combine, init)
