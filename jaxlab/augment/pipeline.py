"""Pipelines: a config string (or list) of registered ops -> one pure on-device function.

    "rrc(size=32, scale=(0.08, 1))|flip_lr|normalize(mean=(0.5,), std=(0.25,))"

compiles to `augment(keys, images, labels) -> (images, targets)`, run inside the jitted,
data-parallel train step: per-example ops are vmapped over the local batch with
keys[i] = fold_in(fold_in(rng, step), index[i]) (each stage folds in its position),
batch ops (mixup, cutmix, mixup_cutmix) see the device's whole shard and mix the (B, K) targets, one-hot
until a batch op mixes them (so mixup_cutmix's label smoothing is timm's; training.label_smoothing would
smooth them once more in the loss).
`rrc|flip_lr` runs as one stage, the flip folded into the crop's sampling grid (no second pass).

Class-conditional parameters: any numeric parameter (or element of a tuple parameter)
may be a per-class table, written `table([v_0, ..., v_{K-1}])`, `table({"3": 1.0,
"default": 0.08})`, `table("path/to/table.json")`, or a bare name looked up in
`config.augment.tables`. Each example gets `one_hot(label, K) @ table` (a matmul, so it
works on batch-sharded arrays in every sharding mode; no gather).

Parameters are checked when a pipeline is parsed, before anything is traced (`check_stage`): an unknown or
missing parameter, or a value outside torchvision's range (rrc scale/ratio (lo, hi) with 0 < lo <= hi,
probabilities in [0, 1], color_jitter magnitudes >= 0 and hue in [0, 0.5], normalize std > 0, mixup/cutmix
alpha > 0, mixup_cutmix alphas >= 0 with one > 0 and label_smoothing in [0, 1), ...; every value of a per-class
table included) is a PipelineError naming the op, the parameter, the value and the valid range.
`check_output_shapes` checks that the train pipeline outputs what the eval transform feeds the model
(jax.eval_shape, nothing compiled).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import numbers
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.augment import ops, rrc
from jaxlab.config import per_class_values
from jaxlab.errors import ConfigError
from jaxlab.registry import Registry

EXAMPLE, BATCH, DETERMINISTIC = "example", "batch", "deterministic"


@dataclasses.dataclass(frozen=True)
class Op:
    fn: Callable
    kind: str  # EXAMPLE: fn(key, image, **p); BATCH: fn(key, images, targets, **p); DETERMINISTIC: fn(image, **p)
    multipass: bool = False  # makes several passes over each image (worth cache-sized chunks on CPU)
    check: Callable[[Mapping[str, Any], "Checker"], None] | None = None  # validates the parameters at build time


@dataclasses.dataclass(frozen=True)
class PerClass:
    """A parameter value that depends on the example's class: values[k] for class k."""
    values: np.ndarray  # (num_classes,) float32


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    op: Op
    params: dict[str, Any]


class PipelineError(ConfigError):
    """A pipeline spec or table is malformed; the message names the stage and the fix."""

    def __init__(self, message: str, field: str = "augment.pipeline"):
        super().__init__(field, message)


# --- parameter checks (torchvision's rules), run on every stage when a pipeline is parsed ---

class Checker:
    """Checks one stage's parameters; every failure is a PipelineError naming the op, the parameter, the bad
    value and the valid range. A per-class table is checked value by value (each class's value must pass)."""

    def __init__(self, name: str, field: str):
        self.name, self.field = name, field

    def fail(self, param: str, value, rule: str):
        raise PipelineError(f"{self.name}: {param}={_show(value)} is invalid: {rule}", self.field)

    def values(self, param: str, value, *, table: bool = True) -> np.ndarray:
        """Every value a numeric parameter can take (a scalar: one; a table: one per class), checked finite."""
        if isinstance(value, PerClass):
            if not table:
                self.fail(param, value, "it sets an array shape (a static value), so it cannot be a per-class table")
            found = np.asarray(value.values, np.float64)
        elif isinstance(value, numbers.Real):
            found = np.asarray([float(value)])
        else:
            self.fail(param, value, "must be a number" + (" or a per-class table" if table else ""))
        if not np.all(np.isfinite(found)):
            self.fail(param, value, "must be finite")
        return found

    def number(self, param: str, value, *, low: float, high: float | None = None, low_open: bool = False,
               high_open: bool = False, table: bool = True) -> np.ndarray:
        """A number (or every value of a per-class table) >= low (> low with low_open) and <= high if given
        (< high with high_open)."""
        found = self.values(param, value, table=table)
        bad = (found <= low) if low_open else (found < low)
        if high is not None:
            bad |= (found >= high) if high_open else (found > high)
        if bad.any():
            if high is None:
                interval = f"{'>' if low_open else '>='} {low:g}"
            else:
                interval = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            k = int(np.argmax(bad))
            where = f" (class {k}: {found[k]:g})" if isinstance(value, PerClass) else ""
            self.fail(param, value, f"must be {interval}{where}")
        return found

    def bounds(self, param: str, value, what: str) -> None:
        """A (lo, hi) pair with 0 < lo <= hi, for each class where lo or hi is a per-class table."""
        rule = f"must be ({what}_lo, {what}_hi) with 0 < lo <= hi"
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            self.fail(param, value, rule)
        lo, hi = (self.values(param, v) for v in value)
        lo, hi = np.broadcast_arrays(lo, hi)
        bad = (lo <= 0) | (lo > hi)
        if bad.any():
            k = int(np.argmax(bad))
            tables = any(isinstance(v, PerClass) for v in value)
            self.fail(param, value, rule + (f" (class {k}: lo={lo[k]:g}, hi={hi[k]:g})" if tables else ""))

    def size(self, param: str, value, *, pair: bool = True) -> None:
        """A static positive int (or, with pair, an (h, w) pair of them)."""
        items = value if pair and isinstance(value, (tuple, list)) and len(value) == 2 else (value,)
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in items):
            self.fail(param, value, "must be a positive int" + (" or an (height, width) pair of them" if pair else ""))

    def channel_stats(self, params: Mapping[str, Any]) -> None:
        """normalize's mean and std: finite numbers or sequences of length 1 or C (the same C), std > 0."""
        lengths = {}
        for param in ("mean", "std"):
            if param not in params:
                continue
            value = params[param]
            flat = value if isinstance(value, (tuple, list)) else (value,)
            if not flat or not all(isinstance(v, numbers.Real) for v in flat):
                self.fail(param, value, "must be a number or a sequence of numbers, one per channel (or one for all)")
            found = np.asarray(flat, np.float64)
            if not np.all(np.isfinite(found)):
                self.fail(param, value, "must be finite")
            if param == "std" and np.any(found <= 0):
                self.fail(param, value, "every std must be > 0")
            if len(flat) > 1:
                lengths[param] = len(flat)
        if len(set(lengths.values())) > 1:
            self.fail("std", params["std"], f"has {lengths['std']} values but mean has {lengths['mean']}: give "
                      "both one value per channel (or one value for all channels)")


def _show(value) -> str:
    if isinstance(value, PerClass):
        return "table([" + ", ".join(f"{v:g}" for v in np.asarray(value.values)) + "])"
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _check_rrc(params, check: Checker) -> None:
    check.size("size", params["size"])
    check.bounds("scale", params.get("scale", (0.08, 1.0)), "scale")
    check.bounds("ratio", params.get("ratio", (3 / 4, 4 / 3)), "ratio")
    if not isinstance(params.get("antialias", True), bool):
        check.fail("antialias", params["antialias"], "must be True or False")
    if params.get("flip_p") is not None:
        check.number("flip_p", params["flip_p"], low=0.0, high=1.0)


PAD_MODES = ("constant", "edge", "reflect", "symmetric")  # torchvision's padding_mode


def _check_pad_crop(params, check: Checker) -> None:
    padding = params.get("padding", 4)
    if not isinstance(padding, numbers.Integral) or isinstance(padding, bool) or padding < 0:
        check.fail("padding", padding, "must be an int >= 0 (it sets the padded image's shape; no per-class table)")
    if params.get("max_shift") is not None:
        check.number("max_shift", params["max_shift"], low=0.0)
    if params.get("mode", "constant") not in PAD_MODES:
        check.fail("mode", params["mode"], f"must be one of {PAD_MODES}")


def _check_probability(params, check: Checker) -> None:
    if "p" in params:
        check.number("p", params["p"], low=0.0, high=1.0)


def _check_color_jitter(params, check: Checker) -> None:
    for param in ("brightness", "contrast", "saturation"):  # a factor is drawn from [max(0, 1 - m), 1 + m]
        if param in params:
            check.number(param, params[param], low=0.0)
    if "hue" in params:
        check.number("hue", params["hue"], low=0.0, high=0.5)


def _check_normalize(params, check: Checker) -> None:
    check.channel_stats(params)


def _check_center_crop(params, check: Checker) -> None:
    check.size("size", params["size"], pair=False)
    if "crop_ratio" in params:
        check.number("crop_ratio", params["crop_ratio"], low=0.0, high=1.0, low_open=True, table=False)


def _check_mix(params, check: Checker) -> None:
    if "alpha" in params:
        check.number("alpha", params["alpha"], low=0.0, low_open=True)


def _check_mixup_cutmix(params, check: Checker) -> None:
    """timm's Mixup: alphas >= 0, at least one > 0 (0 turns that mix off); probabilities in [0, 1]; smoothing
    in [0, 1) (training.label_smoothing's range)."""
    defaults = inspect.signature(ops.mixup_cutmix).parameters
    alphas = {name: params.get(name, defaults[name].default) for name in ("mixup_alpha", "cutmix_alpha")}
    for name, value in alphas.items():
        check.number(name, value, low=0.0)
    if all(value == 0 for value in alphas.values()):
        check.fail("mixup_alpha", alphas["mixup_alpha"], "mixup_alpha or cutmix_alpha must be > 0 (both are 0: "
                   "nothing would be mixed; leave the op out instead)")
    for name in ("switch_prob", "mix_prob"):
        if name in params:
            check.number(name, params[name], low=0.0, high=1.0)
    if "label_smoothing" in params:
        check.number("label_smoothing", params["label_smoothing"], low=0.0, high=1.0, high_open=True)


OPS = Registry("augmentation op", "augment.pipeline")
for _names, _op in [
    (("rrc", "random_resized_crop"), Op(rrc.random_resized_crop, EXAMPLE, check=_check_rrc)),
    (("pad_crop", "pad_and_random_crop"), Op(ops.pad_and_random_crop, EXAMPLE, check=_check_pad_crop)),
    (("flip_lr", "random_flip_left_right"), Op(ops.random_flip_left_right, EXAMPLE, check=_check_probability)),
    (("flip_ud", "random_flip_up_down"), Op(ops.random_flip_up_down, EXAMPLE, check=_check_probability)),
    (("color_jitter",), Op(ops.color_jitter, EXAMPLE, multipass=True, check=_check_color_jitter)),
    (("grayscale", "random_grayscale"), Op(ops.random_grayscale, EXAMPLE, check=_check_probability)),
    (("normalize",), Op(ops.normalize, DETERMINISTIC, check=_check_normalize)),
    (("center_crop", "center_crop_and_resize"), Op(ops.center_crop_and_resize, DETERMINISTIC,
                                                   check=_check_center_crop)),
    (("mixup",), Op(ops.mixup, BATCH, check=_check_mix)),
    (("cutmix",), Op(ops.cutmix, BATCH, check=_check_mix)),
    (("mixup_cutmix",), Op(ops.mixup_cutmix, BATCH, check=_check_mixup_cutmix)),
]:
    for _name in _names:
        OPS.register(_name)(_op)

_POSITIONAL = {EXAMPLE: 2, BATCH: 3, DETERMINISTIC: 1}  # key, image / key, images, targets / image


def check_stage(name: str, op: Op, params: Mapping[str, Any], *, field: str = "augment.pipeline") -> None:
    """Raise PipelineError unless `params` are parameters of `op` (its signature), the required ones are given
    and they pass the op's own check (torchvision's rules, every value of a per-class table included)."""
    signature = inspect.signature(op.fn)
    accepted = list(signature.parameters.values())[_POSITIONAL[op.kind]:]
    if not any(p.kind == p.VAR_KEYWORD for p in accepted):
        names = [p.name for p in accepted if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = [key for key in params if key not in names]
        if unknown:
            raise PipelineError(f"{name} has no parameter {', '.join(map(repr, unknown))}; its parameters are "
                                f"{', '.join(names) or '(none)'}", field)
        missing = [p.name for p in accepted if p.default is p.empty and p.kind != p.VAR_POSITIONAL
                   and p.name not in params]
        if missing:
            raise PipelineError(f"{name} needs {', '.join(f'{m}=...' for m in missing)} (its parameters are "
                                f"{', '.join(names)})", field)
    if op.check is not None:
        op.check(params, Checker(name, field))


def per_class_table(value, num_classes: int, *, base_dir: str = "") -> PerClass:
    """A per-class table from a list of length K, a dict {class: value, "default": v} or a JSON file of either
    (jaxlab.config.per_class_values' rules) as a PerClass parameter."""
    try:
        return PerClass(per_class_values(value, num_classes, base_dir=base_dir).astype(np.float32))
    except ConfigError as error:
        raise PipelineError(error.message) from None


def _literal(node: ast.AST, num_classes: int, tables: Mapping[str, Any], base_dir: str):
    """Evaluate a parameter's syntax tree: literals, tuples/lists, table(...) and table names."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "table":
        if len(node.args) != 1 or node.keywords:
            raise PipelineError("table(...) takes one argument: a list, a dict or a JSON path")
        return per_class_table(_literal_value(node.args[0]), num_classes, base_dir=base_dir)
    if isinstance(node, ast.Name):
        if node.id not in tables:
            raise PipelineError(f"unknown name {node.id!r}: define it in config.augment.tables "
                                f"(known: {sorted(tables)}) or quote strings")
        return per_class_table(tables[node.id], num_classes, base_dir=base_dir)
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e, num_classes, tables, base_dir) for e in node.elts)
    return _literal_value(node)


def _literal_value(node: ast.AST):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise PipelineError(f"parameter value {ast.unparse(node)!r} is not a literal: write a number, string, "
                            "tuple, list, dict, table(...) or a name from config.augment.tables") from None


def _from_python(value, num_classes: int, tables: Mapping[str, Any], base_dir: str):
    """A list-form parameter: "table(...)" strings become tables, inside tuples/lists too."""
    if isinstance(value, str) and value.startswith("table("):
        return _literal(ast.parse(value, mode="eval").body, num_classes, tables, base_dir)
    if isinstance(value, (tuple, list)):
        return tuple(_from_python(v, num_classes, tables, base_dir) for v in value)
    return value


def parse_pipeline(spec: str | Sequence[Mapping[str, Any]], num_classes: int, *,
                   tables: Mapping[str, Any] | None = None, base_dir: str = "",
                   field: str = "augment.pipeline") -> list[Stage]:
    """Parse "op(k=v, ...)|op|..." or [{"op": name, **params}, ...] into stages, each checked (`check_stage`).

    Every error is a PipelineError of config.<field> (augment.pipeline, or augment.eval_pipeline for the
    eval transform), raised before anything is traced or compiled.
    """
    try:
        return _parse(spec, num_classes, dict(tables or {}), base_dir, field)
    except ConfigError as e:
        if e.field == field:
            raise
        message = getattr(e, "message", str(e).removeprefix(f"config.{e.field}: "))
        raise PipelineError(message, field) from None


def _parse(spec, num_classes: int, tables: dict[str, Any], base_dir: str, field: str) -> list[Stage]:
    stages = []
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split("|") if p.strip()]
        for part in parts:
            try:
                node = ast.parse(part if "(" in part else part + "()", mode="eval").body
            except SyntaxError as e:
                raise PipelineError(f"cannot parse pipeline stage {part!r}: {e.msg}") from e
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
                raise PipelineError(f"pipeline stage {part!r} must look like name(key=value, ...)")
            params = {kw.arg: _literal(kw.value, num_classes, tables, base_dir) for kw in node.keywords}
            stages.append((node.func.id, params))
    else:
        for entry in spec:
            entry = dict(entry)
            if "op" not in entry:
                raise PipelineError(f"pipeline entry {entry} has no 'op'")
            name = entry.pop("op")
            params = {key: _from_python(value, num_classes, tables, base_dir) for key, value in entry.items()}
            stages.append((name, params))
    parsed = []
    for name, params in stages:
        op = OPS.lookup(name)
        if op.kind != EXAMPLE and any(isinstance(v, PerClass) for v in jax.tree.leaves(params)):
            raise PipelineError(f"{name}: per-class tables only apply to per-example ops")
        check_stage(name, op, params, field=field)
        parsed.append(Stage(name, op, params))
    return _fuse_crop_and_flip(parsed)


def target_smoothing(spec, num_classes: int, *, tables: Mapping[str, Any] | None = None, base_dir: str = "") -> float:
    """The largest label smoothing the pipeline's batch ops apply to the targets (mixup_cutmix's, its default
    included; 0 when none smooths): a loss that smooths too would smooth the targets twice."""
    smoothing = 0.0
    for stage in parse_pipeline(spec, num_classes, tables=tables, base_dir=base_dir):
        if stage.op.fn is ops.mixup_cutmix:
            value = stage.params.get("label_smoothing",
                                     inspect.signature(ops.mixup_cutmix).parameters["label_smoothing"].default)
            smoothing = max(smoothing, float(value))  # batch ops take no per-class tables
    return smoothing


def _fuse_crop_and_flip(stages: list[Stage]) -> list[Stage]:
    """rrc followed by flip_lr -> one rrc(flip_p=p) stage: the flip is folded into the crop's sampling
    grid instead of a second pass over every image (random_resized_crop's flip_p)."""
    fused: list[Stage] = []
    for stage in stages:
        previous = fused[-1] if fused else None
        if (previous is not None and previous.op.fn is rrc.random_resized_crop and "flip_p" not in previous.params
                and stage.op.fn is ops.random_flip_left_right):
            fused[-1] = Stage(f"{previous.name}|{stage.name}", previous.op,
                              {**previous.params, "flip_p": stage.params.get("p", 0.5)})
        else:
            fused.append(stage)
    return fused


def _split_params(params: dict, one_hot: jax.Array) -> tuple[list, Callable[[list], dict]]:
    """Per-class leaves -> (B,) arrays to vmap over; the rest stay static. Returns them and a rebuild fn."""
    leaves, treedef = jax.tree.flatten(params, is_leaf=lambda x: isinstance(x, PerClass))
    batched = [one_hot @ jnp.asarray(leaf.values) for leaf in leaves if isinstance(leaf, PerClass)]
    is_batched = [isinstance(leaf, PerClass) for leaf in leaves]

    def rebuild(values: list) -> dict:
        it = iter(values)
        return jax.tree.unflatten(treedef, [next(it) if b else leaf for leaf, b in zip(leaves, is_batched)])

    return batched, rebuild


def _apply_deterministic(stage: Stage, images: jax.Array) -> jax.Array:
    return jax.vmap(lambda x: stage.op.fn(x, **stage.params))(images)


CPU_CHUNK_BYTES = 3 << 19  # 1.5 MiB of input images per chunk: the working set stays in a core's cache


def _checked_chunk(requested: int) -> int:
    if requested < 0:
        raise PipelineError(f"examples_per_chunk must be >= 0 (0 = automatic), got {requested}",
                            "augment.examples_per_chunk")
    return requested


def examples_per_chunk_for(image_shape: Sequence[int], itemsize: int, requested: int = 0, *,
                           multipass: bool = True) -> int | None:
    """How many examples each pass of the per-example stages handles; None = the whole local batch at once.

    requested > 0 is used as given. 0 (automatic): on CPU, when a stage makes several passes over
    each image (`multipass`, colour jitter), as many images as fit in CPU_CHUNK_BYTES (at least 1),
    which keeps those passes in cache: crop + flip + colour jitter measured 707 vs 340 img/s at
    128 x 224 px (chunks of 2 vs one vmap) and 34,120 vs 26,858 img/s at 256 x 32 px (128 vs 256).
    Otherwise None, one vmap: single-pass stages lose to chunking on CPU (crop + flip: 1,634 vs
    1,046 img/s at 224 px), and accelerators parallelise over the whole batch.
    """
    if _checked_chunk(requested):
        return requested
    if not multipass or jax.default_backend() != "cpu":
        return None
    return max(1, CPU_CHUNK_BYTES // (int(np.prod(image_shape)) * itemsize))


def _map_examples(fn: Callable, args: tuple, examples_per_chunk: int | None):
    """fn over the leading axis of args: one vmap, or lax.map over chunks of examples_per_chunk (vmapped inside)."""
    batch = jax.tree.leaves(args)[0].shape[0]
    if examples_per_chunk is None or examples_per_chunk >= batch:
        return jax.vmap(fn)(*args)
    return jax.lax.map(lambda example: fn(*example), args, batch_size=examples_per_chunk)


def _segments(stages: list[Stage]) -> list[list[tuple[int, Stage]]]:
    """(position, stage) grouped: consecutive per-example stages run together, a batch op stands alone."""
    segments: list[list[tuple[int, Stage]]] = []
    for position, stage in enumerate(stages):
        if stage.op.kind == BATCH or not segments or segments[-1][-1][1].op.kind == BATCH:
            segments.append([])
        segments[-1].append((position, stage))
    return segments


def build_pipeline(spec, num_classes: int, *, tables: Mapping[str, Any] | None = None, base_dir: str = "",
                   examples_per_chunk: int = 0) -> Callable[[jax.Array, jax.Array, jax.Array],
                                                           tuple[jax.Array, jax.Array]]:
    """Compile a pipeline spec to `augment(keys, images, labels) -> (images, targets)`.

    keys: (B, 2) per-example PRNG keys; images: (B, H, W, C) float; labels: (B,) int.
    targets are (B, num_classes) soft labels: one-hot unless a batch op mixed them.
    Consecutive per-example stages run together over chunks of `examples_per_chunk` examples
    (0: automatic, see `examples_per_chunk_for`); the result does not depend on the chunking.
    """
    segments = _segments(parse_pipeline(spec, num_classes, tables=tables, base_dir=base_dir))
    _checked_chunk(examples_per_chunk)  # before any trace

    def augment(keys, images, labels):
        typed = jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)  # jax.random.key(...) arrays: one per key
        if jnp.ndim(images) != 4 or jnp.ndim(keys) != (1 if typed else 2) or keys.shape[0] != images.shape[0]:
            raise ValueError(f"an augmentation pipeline takes one PRNG key per example, keys of shape (B, 2) for "
                             f"images (B, H, W, C); got keys {jnp.shape(keys)} and images {jnp.shape(images)} "
                             "(split one key: jax.random.split(key, B))")
        class_one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
        targets = class_one_hot
        for segment in segments:
            if segment[0][1].op.kind == BATCH:
                (position, stage), = segment
                batch_keys = jax.random.fold_in(keys[0], position)
                images, targets = stage.op.fn(batch_keys, images, targets, **stage.params)
                continue
            splits = [_split_params(stage.params, class_one_hot) for _, stage in segment]

            def one_example(key, image, batched, segment=segment, splits=splits):
                for (position, stage), (_, rebuild), values in zip(segment, splits, batched):
                    if stage.op.kind == DETERMINISTIC:
                        image = stage.op.fn(image, **stage.params)
                    else:
                        image = stage.op.fn(jax.random.fold_in(key, position), image, **rebuild(values))
                return image

            chunk = examples_per_chunk_for(images.shape[1:], images.dtype.itemsize, examples_per_chunk,
                                           multipass=any(stage.op.multipass for _, stage in segment))
            images = _map_examples(one_example, (keys, images, [values for values, _ in splits]), chunk)
        return images, targets

    return augment


def build_eval_transform(spec, num_classes: int) -> Callable[[jax.Array], jax.Array] | None:
    """The deterministic eval-time pipeline (e.g. "center_crop(size=224)|normalize(...)"), or None if empty."""
    if not spec:
        return None
    stages = parse_pipeline(spec, num_classes, field="augment.eval_pipeline")
    random = [s.name for s in stages if s.op.kind != DETERMINISTIC]
    if random:
        raise PipelineError(f"may only hold deterministic ops; remove {random}", "augment.eval_pipeline")

    def transform(images):
        for stage in stages:
            images = _apply_deterministic(stage, images)
        return images

    return transform


def check_output_shapes(augment: Callable | None, eval_transform: Callable | None, image_shape: Sequence[int],
                        num_classes: int, *, field: str = "augment.pipeline") -> tuple[int, ...]:
    """Raise ConfigError unless the train pipeline's images have the shape evaluation feeds the model.

    Traces (jax.eval_shape: nothing is compiled or run) `augment(keys, images, labels)` as the train step
    calls it and `eval_transform(images)` as the eval step does, on a (1, *image_shape) float32 batch; None
    stands for no pipeline (the images as loaded). E.g. rrc(size=64) on 8x8 images trains at 64 px while the
    model is evaluated at 8 px. Also raises ConfigError when either pipeline cannot be traced on such images
    (e.g. a normalize with 3 means on 1-channel images). Returns the (common) per-example shape.
    """
    image_shape = tuple(int(d) for d in image_shape)
    images = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.PRNGKey(0), 1))
    labels = jax.ShapeDtypeStruct((1,), jnp.int32)

    def traced(fn, args, where):
        try:
            return jax.eval_shape(fn, *args)
        except (AssertionError, ValueError, TypeError) as e:
            raise ConfigError(where, f"cannot apply it to images of shape {image_shape} (the dataset's): "
                                     f"{type(e).__name__}: {e}") from e

    train_shape = image_shape
    if augment is not None:
        out_images, targets = traced(augment, (keys, images, labels), field)
        train_shape = tuple(out_images.shape[1:])
        if tuple(targets.shape) != (1, num_classes):
            raise ConfigError(field, f"the train pipeline returns targets of shape {tuple(targets.shape[1:])}, "
                                     f"expected ({num_classes},) (one soft label per class)")
    eval_shape = image_shape
    if eval_transform is not None:
        eval_shape = tuple(traced(eval_transform, (images,), "augment.eval_pipeline").shape[1:])
    if train_shape != eval_shape:
        fixes = []
        if len(train_shape) == 3 and len(eval_shape) == 3 and train_shape[2] == eval_shape[2]:
            height, width = train_shape[:2]
            if height == width:
                fixes.append(f"add center_crop(size={height}) to config.augment.eval_pipeline")
            fixes.append(f"make the train crop's output size {eval_shape[0]} (e.g. rrc(size={eval_shape[0]}) "
                         if eval_shape[0] == eval_shape[1] else f"make the train crop's output size "
                         f"{eval_shape[:2]} (e.g. rrc(size={eval_shape[:2]}) ")
            fixes[-1] += "in config.augment.pipeline)"
        else:
            fixes.append("make config.augment.pipeline and config.augment.eval_pipeline output the same shape")
        raise ConfigError(field, f"the train pipeline outputs images of shape {train_shape} but evaluation feeds "
                                 f"the model images of shape {eval_shape} (the dataset's {image_shape} after "
                                 f"config.augment.eval_pipeline, if any); {' or '.join(fixes)}")
    return train_shape
