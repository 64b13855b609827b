"""`train_and_evaluate(config, workdir)`: the training run, importable from a notebook.

Sections: setup (validate -> data -> model -> optimiser -> state, restored from the
workdir if a checkpoint exists) / train loop (logging, periodic evaluation, checkpoints,
non-finite and interruption handling) / final evaluation and results files.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from jaxlab import config as config_lib
from jaxlab import data, models, parallel
from jaxlab.augment import build_eval_transform, build_pipeline, check_output_shapes, target_smoothing
from jaxlab.errors import ConfigError, NonFiniteError, WorkdirError
from jaxlab.train import extension as extension_lib
from jaxlab.train import metrics as metrics_lib
from jaxlab.train import preemption
from jaxlab.train import workdir as workdir_lib
from jaxlab.train.checkpoint import Checkpointer
from jaxlab.train.optim import create_optimizer, total_train_steps
from jaxlab.train.state import TrainState, create_train_state
from jaxlab.train.step import Augment, make_eval_step, make_train_step
from jaxlab.train.validation import validate


def evaluate(eval_step, state: TrainState, source, batch_size: int, mesh: Mesh) -> dict[str, Any]:
    """Evaluate on every example of `source` exactly once (padded last batch, masked).

    Returns per_class_metrics(confusion) plus "loss", "confusion", and "predictions" and
    "labels" per example in the split's order (for analyses that need more than counts).
    """
    stats, examples = None, []
    for batch in data.eval_batches(source, batch_size):
        batch_stats, batch_examples = eval_step(state, parallel.shard_batch(batch, mesh))
        stats = batch_stats if stats is None else jax.tree.map(lambda a, b: a + b, stats, batch_stats)
        examples.append(batch_examples)
    stats, examples = parallel.fetch((stats, examples))
    confusion = np.rint(stats["confusion"]).astype(np.int64)
    result = metrics_lib.per_class_metrics(confusion)
    result["loss"] = float(stats["loss_sum"]) / max(result["num_examples"], 1)
    result["confusion"] = confusion
    for key, name in (("prediction", "predictions"), ("label", "labels")):
        result[name] = np.concatenate([e[key] for e in examples])[: len(source)].astype(np.int32)
    return result


class _MetricBuffer:
    """Train metrics kept on device between logging steps (no per-step host sync)."""

    def __init__(self):
        self._pending: list[tuple[int, dict]] = []

    def add(self, step: int, step_metrics: dict) -> None:
        self._pending.append((step, step_metrics))

    def flush(self, last_good_step: int | None) -> dict[str, float] | None:
        """Mean of the buffered metrics; raises NonFiniteError at the first step whose loss, gradient norm or
        updated parameters (the step's fused "finite" flag) are not all finite."""
        if not self._pending:
            return None
        steps, values = zip(*self._pending)
        values = jax.device_get(values)
        self._pending = []
        for step, v in zip(steps, values):
            if not v["finite"]:
                where = (f"the last good checkpoint is step {last_good_step}" if last_good_step is not None
                         else "no checkpoint was written")
                hidden = (" (the loss and gradient norm are finite, the updated parameters are not)"
                          if np.isfinite(v["loss"]) and np.isfinite(v["grad_norm"]) else "")
                raise NonFiniteError(
                    f"training diverged at step {step}: loss {v['loss']:.4g}, gradient norm {v['grad_norm']:.4g}"
                    f"{hidden}; training stopped and {where}. Likely "
                    "causes: a learning rate too high (lower config.optimizer.learning_rate, add warm-up "
                    "config.schedule.warmup_epochs or clip gradients config.optimizer.grad_clip_norm), non-finite "
                    "input data, or a zero std in a normalize op of config.augment.")
        return {k: float(np.mean([v[k] for v in values])) for k in values[0] if k != "finite"}


def train_and_evaluate(config, workdir: str, *, mesh: Mesh | None = None, dataset: data.Dataset | None = None,
                       augment: Augment | None = None, extensions: Sequence[extension_lib.ExtensionFactory] = (),
                       max_steps: int | None = None, initial_variables: dict | None = None) -> dict[str, Any]:
    """Train `config` into `workdir` (resuming from its latest checkpoint) and evaluate.

    Args:
      mesh: devices to use (default: all devices of all processes).
      dataset: an in-memory `jaxlab.data.Dataset` (e.g. `data.from_arrays(...)`) instead of config.data.
      augment: on-device augmentation (default: built from config.augment.pipeline).
      extensions: how studies plug in (jaxlab.train.extension): each factory may wrap the model, add a loss
        term with its own jit inputs, report parameter metrics and finish the run (summary[name]).
      max_steps: run at most this many steps in this call, then checkpoint and return (time-sliced jobs).
      initial_variables: start from these {"params", optionally "batch_stats"} (e.g. a trained model being
        adapted) instead of a fresh init; a checkpoint in the workdir still takes precedence.

    SIGTERM (jaxlab.train.preemption) checkpoints and returns {"finished": False, "preempted": True, ...}.

    Returns the summary also written to <workdir>/summary.json (final top-1, loss,
    per-class accuracy / n / false positives, the confusion matrix and run facts), plus
    "predictions" and "labels" of the eval split and the final TrainState as "state".
    """
    # ---------------------------------------------------------------- setup
    mesh = mesh if mesh is not None else parallel.make_mesh()
    validate(config, num_devices=mesh.size, process_count=jax.process_count())
    if dataset is None:
        dataset = data.load_dataset(config.data)
    batch_size = config.training.batch_size
    if len(dataset.train) < batch_size:
        raise ConfigError("training.batch_size", f"{batch_size} is larger than the training split "
                                     f"({len(dataset.train)} examples of {dataset.name})")
    head_size = config.training.head_size
    if head_size and dataset.num_classes % head_size:
        raise ConfigError("training.head_size", f"{head_size} does not divide the {dataset.num_classes} "
                                     f"classes of {dataset.name} into heads (e.g. 2 for split-MNIST's 5 tasks)")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"the workdir {workdir} is a file; give --workdir a folder")
    os.makedirs(workdir, exist_ok=True)
    with workdir_lib.lock(workdir):
        workdir_lib.reconcile(workdir, config)
        return _train_and_evaluate(config, workdir, mesh, dataset, augment, extensions, max_steps, initial_variables)


def _train_and_evaluate(config, workdir: str, mesh: Mesh, dataset: data.Dataset, augment: Augment | None,
                        extensions: Sequence[extension_lib.ExtensionFactory], max_steps: int | None,
                        initial_variables: dict | None) -> dict[str, Any]:
    """train_and_evaluate's run, once the config, the data and the workdir are checked (and the workdir locked)."""
    batch_size, head_size = config.training.batch_size, config.training.head_size
    is_chief = jax.process_index() == 0
    if augment is None and config.augment.pipeline:
        tables = config.augment.tables.to_dict()
        augment = build_pipeline(config.augment.pipeline, dataset.num_classes, tables=tables,
                                 examples_per_chunk=config.augment.examples_per_chunk)
        if config.training.label_smoothing and target_smoothing(config.augment.pipeline, dataset.num_classes,
                                                                 tables=tables):
            raise ConfigError("training.label_smoothing", f"{config.training.label_smoothing} smooths targets that "
                              "the pipeline's mixup_cutmix already smooths (its label_smoothing, default 0.1): set "
                              "one of them to 0")
    eval_transform = build_eval_transform(config.augment.eval_pipeline, dataset.num_classes)
    check_output_shapes(augment, eval_transform, dataset.image_shape, dataset.num_classes)  # traced, not compiled
    model = models.create_model(config.model, dataset.num_classes)
    train_batches = data.train_batches(dataset.train, batch_size, seed=config.seed,
                                       scale_min=config_lib.host_crop_scale(config, dataset.num_classes))
    steps_per_epoch = train_batches.steps_per_epoch
    total_steps = total_train_steps(config, steps_per_epoch)
    tx, schedule = create_optimizer(config, steps_per_epoch, total_steps)
    model, extensions = extension_lib.build(extensions, extension_lib.RunInfo(
        model, dataset.image_shape, dataset.num_classes, total_steps))
    state = create_train_state(config.seed, model, tx, dataset.image_shape, initial_variables)

    checkpointer = Checkpointer(workdir, keep=config.keep_checkpoints)
    restored = checkpointer.restore_latest(state, mesh)
    if restored is None:
        state = parallel.replicate(state, mesh)
    else:
        state, data_state = restored
        train_batches.set_state(data_state)
    step = int(jax.device_get(state.step))
    if is_chief:  # a resumed run repeats the steps after its checkpoint (and a finished one its final evaluation)
        metrics_lib.drop_records_after(workdir, {"train.jsonl": step, **{
            name: step - (step >= total_steps) for name in ("eval.jsonl", "eval_per_class.jsonl")}})

    train_step = make_train_step(model, tx, mesh, num_classes=dataset.num_classes,
                                 label_smoothing=config.training.label_smoothing,
                                 augment=augment, extensions=extensions, head_size=head_size)
    eval_step = make_eval_step(model, mesh, dataset.num_classes, transform=eval_transform, head_size=head_size)
    writer = metrics_lib.MetricWriter(workdir, tensorboard=config.tensorboard)
    eval_every = {0: steps_per_epoch, config_lib.EVAL_FINAL_ONLY: total_steps}.get(config.eval_every_steps,
                                                                                  config.eval_every_steps)
    checkpoint_every = config.checkpoint_every_steps or steps_per_epoch

    timing = {"eval_and_checkpoints": 0.0, "first_step": 0.0}  # loop seconds not spent on steady-state steps

    def run_eval(at_step: int) -> dict[str, Any]:
        eval_start = time.perf_counter()
        result = evaluate(eval_step, state, dataset.test, config.eval_batch_size, mesh)
        timing["eval_and_checkpoints"] += time.perf_counter() - eval_start
        writer.write("eval", at_step, {"loss": result["loss"], "accuracy": result["accuracy"]})
        if is_chief:
            with open(os.path.join(workdir, "eval_per_class.jsonl"), "a") as f:
                f.write(json.dumps({"step": at_step, **{k: result[k] for k in
                                    ("per_class_accuracy", "per_class_n", "false_positives")},
                                    "confusion": result["confusion"].tolist()}) + "\n")
        return result

    # ---------------------------------------------------------------- train loop
    stop_at = total_steps if max_steps is None else min(total_steps, step + max_steps)
    device_batches = parallel.DeviceBuffer(train_batches, mesh, limit=stop_at - step)  # next batch moves during a step
    progress = metrics_lib.Progress(total_steps, step, batch_size)
    progress.write(f"{dataset.name}: {len(dataset.train)} train / {len(dataset.test)} eval examples, "
                   f"{dataset.num_classes} classes; {config.model.name} on {mesh.size} device(s); "
                   f"{total_steps} steps ({steps_per_epoch}/epoch)"
                   + (f", resumed at step {step}" if restored is not None else ""))
    buffer = _MetricBuffer()
    last_checkpoint = checkpointer.latest_step()

    def checkpoint() -> None:
        nonlocal last_checkpoint
        checkpoint_start = time.perf_counter()
        buffer_metrics = buffer.flush(last_checkpoint)  # never checkpoint a non-finite state
        if buffer_metrics is not None:
            writer.write("train", step, {**buffer_metrics, "learning_rate": float(schedule(step - 1))})
        last_checkpoint = checkpointer.save(state, device_batches.get_state())
        timing["eval_and_checkpoints"] += time.perf_counter() - checkpoint_start

    start_time, start_step = time.perf_counter(), step
    preempted = False
    try:
        with preemption.watch() as sigterm:
            stop = False  # SIGTERM on any process, agreed by all of them before anyone leaves the loop
            while step < stop_at and not stop:
                state, step_metrics = train_step(state, next(device_batches))
                step += 1
                if step == start_step + 1:  # compilation, cache loading: kept out of mean_step_seconds
                    jax.block_until_ready(step_metrics)
                    timing["first_step"] = time.perf_counter() - start_time
                buffer.add(step, step_metrics)
                if step % config.log_every_steps == 0 or step == stop_at:
                    logged = buffer.flush(last_checkpoint)
                    writer.write("train", step, {**logged, "learning_rate": float(schedule(step - 1))})
                    progress.show(step, {"loss": logged["loss"], "acc": logged["accuracy"]})
                    stop = parallel.any_process(sigterm["stop"])  # hosts agree where metrics sync anyway
                else:
                    progress.update(step)
                    stop = sigterm["stop"] if jax.process_count() == 1 else False
                if step % eval_every == 0 and step < total_steps:
                    result = run_eval(step)
                    progress.write(f"step {step}: eval loss {result['loss']:.4f}, accuracy {result['accuracy']:.4f}")
                if step % checkpoint_every == 0 or step == stop_at:
                    checkpoint()
            if stop:
                checkpoint()
                progress.write(f"SIGTERM: checkpointed step {step} in {checkpointer.directory}; rerun to resume.")
                preempted = True
    except KeyboardInterrupt:
        checkpoint()
        progress.write(f"interrupted: checkpointed step {step}; rerun with the same workdir to resume.")
        raise
    finally:
        progress.close()
        checkpointer.wait()
        train_batches.close()
        getattr(dataset.test, "close", lambda: None)()  # an encoded-image split's decoding pool
    train_seconds = time.perf_counter() - start_time
    if preempted:
        writer.close()
        checkpointer.close()
        return {"step": step, "total_steps": total_steps, "finished": False, "preempted": True}

    # ---------------------------------------------------------------- results
    steady_steps = step - start_step - 1
    mean_step_seconds = ((train_seconds - timing["eval_and_checkpoints"] - timing["first_step"]) / steady_steps
                         if steady_steps > 0 else None)
    result = run_eval(step)
    summary = {
        "dataset": dataset.name,
        "model": config.model.name,
        "step": step,
        "total_steps": total_steps,
        "finished": step >= total_steps,
        "num_devices": mesh.size,
        "num_processes": jax.process_count(),
        "train_seconds_this_run": train_seconds,
        "train_images_per_second": (step - start_step) * batch_size / train_seconds if step > start_step else None,
        "mean_step_seconds": mean_step_seconds,  # this call's steps after the first, evaluations excluded
        "class_names": list(dataset.class_names),
        **{k: v for k, v in result.items() if k not in ("confusion", "predictions", "labels")},
        "confusion": result["confusion"].tolist(),
    }
    for extension in extensions:
        if extension.finish is not None:
            summary[extension.name] = extension.finish(workdir, state, is_chief)
    if is_chief:
        print(metrics_lib.format_per_class_table(summary, dataset.class_names), flush=True)
        metrics_lib.write_json(os.path.join(workdir, "summary.json"), summary)
        metrics_lib.write_per_class_csv(os.path.join(workdir, "per_class.csv"), summary, dataset.class_names)
        np.savez_compressed(os.path.join(workdir, "predictions.npz"), predictions=result["predictions"],
                            labels=result["labels"])
    writer.close()
    checkpointer.close()
    return {**summary, "predictions": result["predictions"], "labels": result["labels"], "state": state}
