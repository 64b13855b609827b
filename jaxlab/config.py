"""The shared config schema and its validation.

Every experiment config starts from `base_config()` and overrides fields, so all configs
have the same fields and a locked override with a typo (`--config.trainng.batch_size`)
is an error. `validate` checks values before anything is loaded or compiled and raises
`ConfigError` naming the field and saying how to fix it.
"""

from __future__ import annotations

import math

import ml_collections

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adamw", "lars", "lamb")
SCHEDULES = ("constant", "cosine", "step")
LR_SCALING = ("none", "linear", "sqrt")


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and the fix."""

    def __init__(self, field: str, message: str):
        super().__init__(f"config.{field}: {message}")
        self.field = field


def base_config() -> ml_collections.ConfigDict:
    """All fields every experiment has, with defaults for plain supervised training."""
    config = ml_collections.ConfigDict()
    config.experiment = "train"
    config.seed = 0

    config.data = ml_collections.ConfigDict(dict(
        source="digits",     # see jaxlab.data.SOURCES
        name="",             # tfds dataset name (source=tfds) or svmlight file name
        dir="",              # folder of upstream files
        path="",             # a single file (npz, cifar tar, svmlight train file)
        train_split="train",
        eval_split="test",
        image_size=0,        # host-side resize to a fixed size (variable-size datasets); 0 = keep
        seed=0,              # only for sources that need a split (digits)
    ))

    config.model = ml_collections.ConfigDict(dict(
        name="cnn",          # see jaxlab.models.MODELS
        dtype="float32",     # compute dtype: float32 | bfloat16 (params stay float32)
        bn_sync=False,       # False: per-device BatchNorm statistics; True: synced over all devices
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

    config.sweep = ml_collections.ConfigDict(dict(  # experiment="augmentation_sweep" (jaxlab.classwise.sweep)
        parameter="crop_scale",   # the config.augment.tables name each run sets to its strength
        strengths=(0.08, 0.25, 0.5, 1.0),
        seeds=(0, 1, 2),
        num_shards=1,             # spread the runs over machines: this process runs
        shard_index=0,            #   runs i with i % num_shards == shard_index
        keep_run_checkpoints=False,  # False: delete a run's checkpoints once its predictions are saved
    ))

    config.classwise = ml_collections.ConfigDict(dict(  # the analysis (jaxlab.classwise)
        reference_strength=0.0,   # s* classes are scored at; 0 = the strength with the best average accuracy
        alpha=0.05,               # affected: one-sided p-value of the drop <= alpha ...
        min_drop=0.0,             # ... and a drop of at least this much accuracy
        correction="none",        # none | bonferroni (over classes)
        symmetric_threshold=0.2,  # co-labelling P(l|k) and P(k|l) >= this: ambiguous
        cooccurrence_threshold=0.2,  # one direction >= this (not both): co-occurring
        class_groups=(),          # group id per class (hierarchy for fine-grained); () = the dataset's, if any
        real_json="",             # ImageNet ReaL real.json for multi-label scoring of the eval split
        intervention=True,        # retrain with class-conditional strength after the sweep
        intervention_selection="false_positive_growth",  # false_positive_growth | affected
        intervention_pairs=2,     # confused pairs to treat (both classes of each)
        intervention_strength=1.0,  # the strength for treated classes (1.0: no random crop)
    ))

    config.kprior = ml_collections.ConfigDict(dict(  # experiment="kprior_adaptation" (jaxlab.kprior.experiments)
        protocol="adult",         # adult (random subset, top-lambda removal) | usps_odd_even (digit splits)
        tasks=("add_data", "remove_data", "change_regularizer", "change_model"),
        methods=("kprior", "replay", "batch"),  # batch = full retraining (= Replay with 100% memory)
        memory_fractions=(1.0, 0.5, 0.2, 0.1, 0.07, 0.05, 0.02),  # of the past data
        seeds=(0, 1, 2),
        memory_selection="lambda",  # lambda (class-balanced top h'(f)) | random (class-balanced)
        delta=5.0,                # L2 strength of the base model (and of the K-prior's weight term)
        change_regularizer_deltas=(50.0, 5.0),  # change_regularizer: delta old -> new
        change_model_degree=2,    # change_model, GLM: base degree -> model.polynomial_degree
        change_model_hidden_sizes=(100, 100),   # change_model, MLP: base widths -> model.hidden_sizes
        subset_fraction=0.01,     # adult: random subset of the train split for add_data / change_*
        add_fraction=0.1,         # adult add_data: the last 10% of the subset is the new data
        remove_count=100,         # adult remove_data: the highest-lambda points removed (class-balanced)
        add_digit=9,              # usps_odd_even add_data: new data = this digit
        remove_digit=8,           # usps_odd_even remove_data: removed (and left out of the test set)
        usps_range=(0.0, 1.0),    # usps source: ESL pixels [-1, 1] mapped to this range
        solver="lbfgs",           # lbfgs | newton (GLMs) | adam (networks)
        base_solver="",           # the base models' solver ("" = solver; lbfgs where a GLM is too wide for newton)
        steps=1000,               # max L-BFGS / Newton steps, or Adam steps
        tol=1e-6,                 # L-BFGS / Newton: stop at ||grad|| <= tol (objective / (N_new + |M|))
        history=100,              # L-BFGS memory
        learning_rate=0.005,      # Adam
        vectorize_fractions=True,  # True: padded 0/1 memory, vmapped over seeds x fractions (GLMs)
        float64=False,            # x64 for the whole experiment
        dedupe_seeds=False,       # solve seed-independent problems once and copy the records
    ))

    config.dreg = ml_collections.ConfigDict(dict(  # DReg (jaxlab.dreg), wired into train_and_evaluate
        enabled=False,
        layer="",                 # parameter path of the Dense/Conv to replicate; "" = the final classifier
        combine="sum",            # sum | mean | two_heads (jaxlab.dreg.COMBINES)
        init="independent",       # independent | variance_preserving | split (jaxlab.dreg.INITS)
        penalty="squared_cosine",  # jaxlab.dreg.PENALTIES
        coefficient=1e-2,         # lambda (0 = the copy without penalty, control B2)
        schedule="constant",      # constant | linear_warmup | cosine_decay (of lambda)
        warmup_steps=0,
        matched_single=False,     # control B1: no copy; the single layer reparametrised to match the copies'
                                  # effective LR, weight decay and init variance (jaxlab.dreg.Matched)
    ))

    config.dreg_study = ml_collections.ConfigDict(dict(  # experiment="dreg_study" (jaxlab.dreg.study)
        methods=("B0", "DReg"),   # the grid's methods, in plot order
        overrides={"B0": {}, "DReg": {"dreg": {"enabled": True}}},  # method -> nested config overrides
        candidates={},            # tuned method -> {candidate -> overrides}, picked on a validation split
        batch_sizes=(128, 4096),
        seeds=(0, 1, 2),
        sweep_batch_sizes=(),     # where candidates are compared; () = the largest of batch_sizes
        sweep_seeds=(0,),
        train_examples=0,         # first N examples of the train split (0 = all)
        validation_examples=0,    # the next N train examples: the candidates' validation split
        test_examples=0,          # first N of the eval split (0 = all)
        target_accuracy=0.8,      # steps to reach this test accuracy (evaluated once per epoch)
    ))

    config.eval_batch_size = 512
    config.eval_every_steps = 0      # 0: evaluate once per epoch
    config.log_every_steps = 20
    config.checkpoint_every_steps = 0  # 0: once per epoch
    config.keep_checkpoints = 2
    config.tensorboard = False
    return config


def require(condition: bool, field: str, message: str) -> None:
    """Raise ConfigError(field, message) unless condition (config checks here and in experiment modules)."""
    if not condition:
        raise ConfigError(field, message)


def validate(config, *, num_devices: int, process_count: int = 1) -> None:
    """Check the values of `config` before any data is loaded or code compiled."""
    from jaxlab import data, experiments, models  # local: avoid import cycles

    experiments.EXPERIMENTS.lookup(config.experiment)
    models.MODELS.lookup(config.model.name)
    models.compute_dtype(config.model)
    require(config.model.polynomial_degree >= 1, "model.polynomial_degree", "must be >= 1")
    data.check_data_config(config.data)

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

    validate_dreg(config.dreg)

    for field in ("eval_every_steps", "log_every_steps", "checkpoint_every_steps"):
        require(config[field] >= 0, field, "must be >= 0")
    require(config.log_every_steps > 0, "log_every_steps", "must be positive")
    require(config.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")


def validate_dreg(dreg_config, model=None, input_shape: tuple[int, ...] | None = None) -> None:
    """config.dreg's values; with `model` and `input_shape` also that `layer` names one of its Dense/Conv.

    The layer check traces the model abstractly (no compile); train_and_evaluate runs it once
    the data's example shape is known. Warns for the negative_squared_distance penalty under
    sum/mean, which does not change the network's function (jaxlab.dreg.replicate).
    """
    import warnings

    from jaxlab import dreg  # local: avoid import cycles

    for field, choices in (("combine", tuple(dreg.COMBINES)), ("init", dreg.INITS),
                           ("penalty", tuple(dreg.PENALTIES)), ("schedule", dreg.SCHEDULES)):
        value = dreg_config[field]
        require(value in choices, f"dreg.{field}", f"unknown {field} {value!r}; choose one of {choices}")
    require(dreg_config.coefficient >= 0, "dreg.coefficient",
             f"must be >= 0 (0 trains the copy without penalty), got {dreg_config.coefficient}")
    require(dreg_config.warmup_steps >= 0, "dreg.warmup_steps", "must be >= 0")
    require(dreg_config.schedule != "linear_warmup" or dreg_config.warmup_steps > 0, "dreg.warmup_steps",
             "schedule='linear_warmup' needs warmup_steps > 0")
    if (dreg_config.enabled and not dreg_config.matched_single and dreg_config.combine in ("sum", "mean")
            and dreg_config.penalty == "negative_squared_distance"):
        warnings.warn(f"config.dreg.penalty='negative_squared_distance' with combine={dreg_config.combine!r} is a "
                      "NO-OP on the network's function: W1 + W2 follows the unpenalised trajectory while W1 - W2 "
                      "grows without bound (and eventually overflows). Use squared_cosine unless this is the "
                      "no-op control.", UserWarning, stacklevel=3)
    if model is None:
        return
    try:
        dreg.target_layer(model, input_shape, dreg_config.layer or None, dreg_config.combine)
    except ValueError as error:
        raise ConfigError("dreg.layer", str(error)) from None
