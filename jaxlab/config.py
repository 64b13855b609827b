"""The trainer's config schema and the checks of its values.

`base_config()` holds the fields every training run has (data, model, augment, training, optimizer, schedule,
evaluation, logging and checkpoint intervals); each experiment adds its own fragment
(`jaxlab.experiments.base_config(name)`), so a config carries only the fields its experiment reads, and a
locked override with a typo (`--config.trainng.batch_size`) is an error. `validate` checks the values before
anything is loaded or compiled and raises `ConfigError` naming the field and saying how to fix it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import ml_collections
import numpy as np

from jaxlab.errors import ConfigError, require

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adamw", "lars", "lamb")
SCHEDULES = ("constant", "cosine", "step")
LR_SCALING = ("none", "linear", "sqrt")
EVAL_FINAL_ONLY = -1  # config.eval_every_steps: evaluate only after the last step
ON_CONFIG_CHANGE = ("error", "restart", "extend")  # see jaxlab.train.workdir


def base_config() -> ml_collections.ConfigDict:
    """All fields every experiment has, with defaults for plain supervised training."""
    config = ml_collections.ConfigDict()
    config.experiment = "train"
    config.seed = 0

    config.data = ml_collections.ConfigDict(dict(
        source="digits",     # see jaxlab.data.SOURCES
        name="",             # tfds dataset name (source=tfds) or svmlight file name
        dir=os.environ.get("JAXLAB_DATA_DIR", ""),  # upstream files, or their subfolders mnist/, usps/, ... (README)
        path="",             # a single file (npz, cifar tar, svmlight train file)
        train_split="train",
        eval_split="test",
        image_size=0,        # host-side resize to a fixed size (variable-size datasets); 0 = keep
        seed=0,              # only for sources that need a split (digits)
        num_classes=0,       # npz: the number of classes (a label >= it is a DataError); 0 = from the file or max + 1
        # Encoded-image sources (image_folder, tfds_jpeg; jaxlab.data.loader): decoded and cropped on the host.
        workers=-1,          # decoding processes; -1 = the CPUs this process may use, 0 = in-process
        prefetch=2,          # host batches prepared ahead
        rrc_scale=0.08,      # the random-resized crop's scale lower bound (training; image_size is its output)
        rrc_scale_table="",  # or a config.augment.tables name: per-class lower bounds (e.g. a sweep's "crop_scale")
        eval_resize=0,       # evaluation: shorter side resized to this, then centre crop image_size; 0 = size / 0.875
    ))

    config.model = ml_collections.ConfigDict(dict(
        name="cnn",          # see jaxlab.models.MODELS
        dtype="float32",     # compute dtype: float32 | bfloat16 (params stay float32)
        bn_sync=False,       # False: per-device BatchNorm statistics; True: synced over all devices
        bn_group_size=0,     # > 0: ghost BatchNorm, statistics per this many consecutive examples of each device's
                             # batch (e.g. 32, Goyal et al.): the same on any device count; 0: off
        hidden_sizes=(100, 100),
        width=0,             # base channel width; 0 = the model's standard width (cnn 32, lenet 6, resnets 64)
        polynomial_degree=1,
    ))

    config.augment = ml_collections.ConfigDict(dict(
        pipeline="",         # on-device train augmentation, e.g. "rrc(size=32)|flip_lr" (jaxlab.augment)
        eval_pipeline="",    # deterministic eval preprocessing, e.g. "center_crop(size=224)|normalize(...)"
        tables={},           # name -> per-class table (list, {class: v, "default": v} or JSON path)
        examples_per_chunk=0,  # per-example ops run over chunks of this many images; 0 = automatic (CPU:
                               # cache-sized chunks, accelerators: the whole local batch in one vmap)
    ))

    config.training = ml_collections.ConfigDict(dict(
        batch_size=128,      # GLOBAL batch over all devices and hosts
        num_epochs=10.0,
        num_train_steps=-1,  # > 0 overrides num_epochs
        label_smoothing=0.0,
        head_size=0,         # > 0: task-incremental heads of head_size consecutive classes (jaxlab.train.step)
    ))

    config.optimizer = ml_collections.ConfigDict(dict(
        name="momentum",     # sgd | momentum | nesterov | adamw | lars | lamb
        learning_rate=0.1,   # at base_batch_size; scaled by lr_scaling
        lr_scaling="none",   # none | linear | sqrt: lr * (batch_size / base_batch_size) ** {0, 1, 1/2}
        base_batch_size=256,
        momentum=0.9,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=5e-4,
        decay_bn_and_bias=False,  # False: no weight decay (nor LARS trust ratio) on 1-D params
        trust_coefficient=0.001,  # LARS
        grad_clip_norm=0.0,       # > 0 clips the global gradient norm
    ))

    config.schedule = ml_collections.ConfigDict(dict(
        name="cosine",       # constant | cosine | step, each after a linear warm-up
        warmup_epochs=0.0,
        end_lr_factor=0.0,   # cosine: final lr = end_lr_factor * lr
        decay_epochs=(),     # step: epochs at which lr is multiplied by decay_factor
        decay_factor=0.1,
    ))

    config.eval_batch_size = 512
    config.eval_every_steps = 0      # 0: once per epoch; EVAL_FINAL_ONLY (-1): only after the last step
    config.log_every_steps = 20
    config.checkpoint_every_steps = 0  # 0: once per epoch
    config.keep_checkpoints = 2
    config.tensorboard = False
    config.on_config_change = "error"  # a rerun in a trained workdir with another config: error | restart | extend
                                       # (jaxlab.train.workdir)
    return config


def validate(config, *, num_devices: int, process_count: int = 1) -> None:
    """Check the trainer's own fields (batch, optimiser, schedule, intervals) before anything is loaded or compiled.

    The fields whose choices live in a lower layer's registry (data source, model, augmentation ops) are checked
    by `jaxlab.train.validate`, each experiment's own fragment by its module's `validate`.
    """
    batch = config.training.batch_size
    require(batch > 0, "training.batch_size", f"must be positive, got {batch}")
    require(batch % num_devices == 0, "training.batch_size",
            f"the global batch {batch} is not divisible by the {num_devices} devices; "
            f"use a multiple of {num_devices}, e.g. {math.ceil(batch / num_devices) * num_devices}")
    require(batch % process_count == 0, "training.batch_size",
            f"the global batch {batch} is not divisible by the {process_count} processes")
    eval_batch = config.eval_batch_size
    require(eval_batch > 0 and eval_batch % num_devices == 0, "eval_batch_size",
            f"must be a positive multiple of the {num_devices} devices, got {eval_batch}")
    require(config.training.num_train_steps > 0 or config.training.num_epochs > 0,
            "training.num_epochs", "set num_epochs > 0 or training.num_train_steps > 0")
    require(0.0 <= config.training.label_smoothing < 1.0, "training.label_smoothing", "must be in [0, 1)")
    require(config.training.head_size >= 0, "training.head_size", "must be >= 0 (0: one head over all classes)")
    require(config.model.polynomial_degree >= 1, "model.polynomial_degree", "must be >= 1")
    group = config.model.bn_group_size
    require(group >= 0, "model.bn_group_size", f"must be >= 0 (0: off), got {group}")
    require(not (group and config.model.bn_sync), "model.bn_group_size",
            "ghost BatchNorm groups and model.bn_sync=True are two different statistics; set one of them")
    require(not group or (batch // num_devices) % group == 0, "model.bn_group_size",
            f"each device's batch of {batch // num_devices} examples (training.batch_size {batch} over {num_devices} "
            f"devices) must be a multiple of the group size {group}")
    require(0 < config.data.rrc_scale <= 1, "data.rrc_scale", f"must be in (0, 1], got {config.data.rrc_scale}")
    require(not config.data.rrc_scale_table or config.data.rrc_scale_table in config.augment.tables,
            "data.rrc_scale_table", f"{config.data.rrc_scale_table!r} is not a config.augment.tables entry "
            f"({sorted(config.augment.tables)})")
    require(config.data.workers >= -1 and config.data.prefetch >= 0 and config.data.eval_resize >= 0, "data.workers",
            "data.workers must be >= -1 (-1: every CPU), data.prefetch and data.eval_resize >= 0")

    opt = config.optimizer
    require(opt.name in OPTIMIZERS, "optimizer.name", f"unknown optimizer {opt.name!r}; choose one of {OPTIMIZERS}")
    require(opt.learning_rate > 0, "optimizer.learning_rate", f"must be positive, got {opt.learning_rate}")
    require(opt.lr_scaling in LR_SCALING, "optimizer.lr_scaling", f"{opt.lr_scaling!r} is not one of {LR_SCALING}")
    require(opt.base_batch_size > 0, "optimizer.base_batch_size", "must be positive")
    require(opt.weight_decay >= 0, "optimizer.weight_decay", f"must be >= 0, got {opt.weight_decay}")
    require(0 <= opt.momentum < 1, "optimizer.momentum", f"must be in [0, 1), got {opt.momentum}")
    require(opt.grad_clip_norm >= 0, "optimizer.grad_clip_norm", "must be >= 0 (0 disables clipping)")

    sched = config.schedule
    require(sched.name in SCHEDULES, "schedule.name", f"unknown schedule {sched.name!r}; choose one of {SCHEDULES}")
    require(sched.warmup_epochs >= 0, "schedule.warmup_epochs", "must be >= 0")
    require(all(e > 0 for e in sched.decay_epochs), "schedule.decay_epochs", "epochs must be positive")

    require(config.eval_every_steps >= 0 or config.eval_every_steps == EVAL_FINAL_ONLY, "eval_every_steps",
            f"must be >= 0 (0: once per epoch) or EVAL_FINAL_ONLY = {EVAL_FINAL_ONLY} (only after the last step)")
    require(config.checkpoint_every_steps >= 0, "checkpoint_every_steps", "must be >= 0 (0: once per epoch)")
    require(config.log_every_steps > 0, "log_every_steps", "must be positive")
    require(config.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")
    require(config.on_config_change in ON_CONFIG_CHANGE, "on_config_change",
            f"{config.on_config_change!r} is not one of {ON_CONFIG_CHANGE}")


def per_class_values(value, num_classes: int, *, field: str = "augment.tables", base_dir: str = "") -> np.ndarray:
    """A per-class table (config.augment.tables' entries: a list of K numbers, a dict {class: value, "default": v}
    or a JSON file of either; a relative path is taken from base_dir) as a (K,) float64 array; ConfigError(field)."""
    if isinstance(value, str):
        path = value if os.path.isabs(value) or not base_dir else os.path.join(base_dir, value)
        try:
            with open(path) as f:
                value = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(field, f"cannot read the per-class table {path!r}: {e}") from e
    if isinstance(value, Mapping):
        value = dict(value)
        default = value.pop("default", None)
        keys = {int(k): float(v) for k, v in value.items()}
        missing = [k for k in range(num_classes) if k not in keys]
        if missing and default is None:
            raise ConfigError(field, f"per-class table misses classes {missing[:10]} and has no 'default'")
        if any(not 0 <= k < num_classes for k in keys):
            raise ConfigError(field, f"per-class table has classes outside [0, {num_classes}): {sorted(keys)}")
        values = [keys.get(k, default) for k in range(num_classes)]
    else:
        values = list(value)
        if len(values) != num_classes:
            raise ConfigError(field, f"per-class table has {len(values)} values for {num_classes} classes")
    try:
        array = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        raise ConfigError(field, f"per-class table values must be numbers, got {values}") from None
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        bad = [k for k, v in enumerate(array.reshape(len(values), -1)) if not np.all(np.isfinite(v))]
        raise ConfigError(field, f"per-class table values must be finite numbers, one per class; got {values}"
                          + (f" (class {bad[0]}: {values[bad[0]]})" if bad else ""))
    return array


def host_crop_scale(config, num_classes: int):
    """The host-side random-resized crop's scale lower bound (encoded-image sources): config.data.rrc_scale, or one
    per class from config.augment.tables[config.data.rrc_scale_table] (class-conditional strength)."""
    name = config.data.rrc_scale_table
    if not name:
        return config.data.rrc_scale
    return per_class_values(config.augment.tables.to_dict()[name], num_classes, field="data.rrc_scale_table")
