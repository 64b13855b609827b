"""Pipelines: a config string (or list) of registered ops -> one pure on-device function.

    "rrc(size=32, scale=(0.08, 1))|flip_lr|normalize(mean=(0.5,), std=(0.25,))"

compiles to `augment(keys, images, labels) -> (images, targets)`, run inside the jitted,
data-parallel train step: per-example ops are vmapped over the local batch with
keys[i] = fold_in(fold_in(rng, step), index[i]) (each stage folds in its position),
batch ops (mixup, cutmix) see the device's whole shard and mix the soft targets.
`rrc|flip_lr` runs as one stage, the flip folded into the crop's sampling grid (no second pass).

Class-conditional parameters: any numeric parameter (or element of a tuple parameter)
may be a per-class table, written `table([v_0, ..., v_{K-1}])`, `table({"3": 1.0,
"default": 0.08})`, `table("path/to/table.json")`, or a bare name looked up in
`config.augment.tables`. Each example gets `one_hot(label, K) @ table` (a matmul, so it
works on batch-sharded arrays in every sharding mode; no gather).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.augment import ops, rrc
from jaxlab.errors import ConfigError
from jaxlab.registry import Registry

EXAMPLE, BATCH, DETERMINISTIC = "example", "batch", "deterministic"


@dataclasses.dataclass(frozen=True)
class Op:
    fn: Callable
    kind: str  # EXAMPLE: fn(key, image, **p); BATCH: fn(key, images, targets, **p); DETERMINISTIC: fn(image, **p)
    multipass: bool = False  # makes several passes over each image (worth cache-sized chunks on CPU)


OPS = Registry("augmentation op", "augment.pipeline")
for _names, _op in [
    (("rrc", "random_resized_crop"), Op(rrc.random_resized_crop, EXAMPLE)),
    (("pad_crop", "pad_and_random_crop"), Op(ops.pad_and_random_crop, EXAMPLE)),
    (("flip_lr", "random_flip_left_right"), Op(ops.random_flip_left_right, EXAMPLE)),
    (("flip_ud", "random_flip_up_down"), Op(ops.random_flip_up_down, EXAMPLE)),
    (("color_jitter",), Op(ops.color_jitter, EXAMPLE, multipass=True)),
    (("grayscale", "random_grayscale"), Op(ops.random_grayscale, EXAMPLE)),
    (("normalize",), Op(ops.normalize, DETERMINISTIC)),
    (("center_crop", "center_crop_and_resize"), Op(ops.center_crop_and_resize, DETERMINISTIC)),
    (("mixup",), Op(ops.mixup, BATCH)),
    (("cutmix",), Op(ops.cutmix, BATCH)),
]:
    for _name in _names:
        OPS.register(_name)(_op)


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


def per_class_table(value, num_classes: int, *, base_dir: str = "") -> PerClass:
    """A per-class table from a list of length K, a dict {class: value, "default": v} or a JSON file of either."""
    if isinstance(value, str):
        path = value if os.path.isabs(value) or not base_dir else os.path.join(base_dir, value)
        try:
            with open(path) as f:
                value = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise PipelineError(f"cannot read the per-class table {path!r}: {e}") from e
    if isinstance(value, Mapping):
        value = dict(value)
        default = value.pop("default", None)
        keys = {int(k): float(v) for k, v in value.items()}
        missing = [k for k in range(num_classes) if k not in keys]
        if missing and default is None:
            raise PipelineError(f"per-class table misses classes {missing[:10]} and has no 'default'")
        if any(not 0 <= k < num_classes for k in keys):
            raise PipelineError(f"per-class table has classes outside [0, {num_classes}): {sorted(keys)}")
        values = [keys.get(k, default) for k in range(num_classes)]
    else:
        values = list(value)
        if len(values) != num_classes:
            raise PipelineError(f"per-class table has {len(values)} values for {num_classes} classes")
    return PerClass(np.asarray(values, np.float32))


def _literal(node: ast.AST, num_classes: int, tables: Mapping[str, Any], base_dir: str):
    """Evaluate a parameter's syntax tree: literals, tuples/lists, table(...) and table names."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "table":
        if len(node.args) != 1 or node.keywords:
            raise PipelineError("table(...) takes one argument: a list, a dict or a JSON path")
        return per_class_table(ast.literal_eval(node.args[0]), num_classes, base_dir=base_dir)
    if isinstance(node, ast.Name):
        if node.id not in tables:
            raise PipelineError(f"unknown name {node.id!r}: define it in config.augment.tables "
                                f"(known: {sorted(tables)}) or quote strings")
        return per_class_table(tables[node.id], num_classes, base_dir=base_dir)
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e, num_classes, tables, base_dir) for e in node.elts)
    return ast.literal_eval(node)


def _from_python(value, num_classes: int, tables: Mapping[str, Any], base_dir: str):
    """A list-form parameter: "table(...)" strings become tables, inside tuples/lists too."""
    if isinstance(value, str) and value.startswith("table("):
        return _literal(ast.parse(value, mode="eval").body, num_classes, tables, base_dir)
    if isinstance(value, (tuple, list)):
        return tuple(_from_python(v, num_classes, tables, base_dir) for v in value)
    return value


def parse_pipeline(spec: str | Sequence[Mapping[str, Any]], num_classes: int, *,
                   tables: Mapping[str, Any] | None = None, base_dir: str = "") -> list[Stage]:
    """Parse "op(k=v, ...)|op|..." or [{"op": name, **params}, ...] into stages."""
    tables = dict(tables or {})
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
        parsed.append(Stage(name, op, params))
    return _fuse_crop_and_flip(parsed)


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
    stages = parse_pipeline(spec, num_classes)
    random = [s.name for s in stages if s.op.kind != DETERMINISTIC]
    if random:
        raise PipelineError(f"may only hold deterministic ops; remove {random}", "augment.eval_pipeline")

    def transform(images):
        for stage in stages:
            images = _apply_deterministic(stage, images)
        return images

    return transform
