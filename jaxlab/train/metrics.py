"""Host-side metrics: JSONL (+ optional TensorBoard) writers, per-class results, the progress line.

Only process 0 writes files; every function here is a side effect of the runner, none
is called inside jitted code.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from typing import Any, Mapping

import jax
import numpy as np
import tqdm.auto as tqdm


def per_class_metrics(confusion: np.ndarray) -> dict[str, Any]:
    """From confusion[true, predicted] counts: top-1, per-class n / accuracy / false positives.

    acc_k = C[k, k] / sum_l C[k, l];  FP_k = sum_{l != k} C[l, k] (predicted k, label l).
    A class absent from the split has accuracy NaN.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    n = confusion.sum(axis=1)
    correct = np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(n > 0, correct / n, np.nan)
    return {
        "num_examples": int(n.sum()),
        "accuracy": float(correct.sum() / max(n.sum(), 1)),
        "per_class_n": n.astype(int).tolist(),
        "per_class_accuracy": accuracy.tolist(),
        "false_positives": (confusion.sum(axis=0) - correct).astype(int).tolist(),
    }


def format_per_class_table(per_class: Mapping[str, Any], class_names: tuple[str, ...], *, limit: int = 20) -> str:
    """A plain-text table: class, name, n, accuracy, false positives. With more than `limit` classes (ImageNet's
    1,000 lines) only the limit / 2 worst and best classes by accuracy are listed (per_class.csv has them all)."""
    width = max([len("name")] + [len(c) for c in class_names])
    lines = [f"{'class':>5}  {'name':<{width}}  {'n':>6}  {'accuracy':>8}  {'false pos':>9}"]

    def row(k: int) -> str:
        return (f"{k:>5}  {class_names[k]:<{width}}  {per_class['per_class_n'][k]:>6}  "
                f"{per_class['per_class_accuracy'][k]:>8.4f}  {per_class['false_positives'][k]:>9}")

    if len(class_names) <= limit:
        lines += [row(k) for k in range(len(class_names))]
    else:
        accuracy = np.nan_to_num(np.asarray(per_class["per_class_accuracy"], float), nan=np.inf)
        order = np.argsort(accuracy, kind="stable")
        lines += [row(int(k)) for k in order[:limit // 2]]
        lines.append(f"{'...':>5}  ({len(class_names) - 2 * (limit // 2)} classes between; all in per_class.csv)")
        lines += [row(int(k)) for k in order[-(limit // 2):]]
    lines.append(f"{'all':>5}  {'':<{width}}  {per_class['num_examples']:>6}  {per_class['accuracy']:>8.4f}")
    return "\n".join(lines)


def write_per_class_csv(path: str, per_class: Mapping[str, Any], class_names: tuple[str, ...]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "name", "n", "accuracy", "false_positives"])
        for k, name in enumerate(class_names):
            writer.writerow([k, name, per_class["per_class_n"][k], per_class["per_class_accuracy"][k],
                             per_class["false_positives"][k]])


def write_json(path: str, obj: Any) -> None:
    """Atomic JSON write (a crash never leaves a half-written file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def drop_records_after(workdir: str, last_steps: Mapping[str, int]) -> None:
    """Keep only the lines with "step" <= last_steps[name] of each <workdir>/<name> JSONL file (rewritten
    atomically): after a resume from step k the steps after k are trained and logged again, once."""
    for name, last in last_steps.items():
        path = os.path.join(workdir, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            lines = [line for line in f if line.strip()]
        kept = [line for line in lines if json.loads(line)["step"] <= last]
        if len(kept) < len(lines):
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                f.writelines(kept)
            os.replace(tmp, path)


class MetricWriter:
    """Appends {"step", **scalars} lines to <workdir>/<name>.jsonl; mirrors to TensorBoard if asked."""

    def __init__(self, workdir: str, *, tensorboard: bool = False):
        self.workdir = workdir
        self.enabled = jax.process_index() == 0
        self._tb = None
        if tensorboard and self.enabled:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as e:
                raise ImportError("config.tensorboard=True needs tensorboardX: pip install 'jaxlab[tensorboard]'") from e
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, name: str, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with open(os.path.join(self.workdir, f"{name}.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(f"{name}/{k}", float(v), int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


class Progress:
    """A progress line with step, throughput, ETA and the latest metrics (tqdm, process 0 only).

    On a terminal it redraws in place; in logs (no TTY) it prints a line every `min_interval` s.
    """

    def __init__(self, total_steps: int, initial_step: int, batch_size: int, *, min_interval: float = 10.0):
        self.batch_size = batch_size
        is_tty = sys.stderr.isatty()
        self._bar = tqdm.tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True,
                              disable=jax.process_index() != 0, mininterval=0.2 if is_tty else min_interval,
                              file=sys.stderr, desc="train")
        self._last_time, self._last_step = time.perf_counter(), initial_step
        self._bar.set_description("compiling")  # the first step compiles: no ETA to show until it is done

    def update(self, step: int) -> None:
        if self._bar.desc.startswith("compiling"):
            self._bar.set_description("train", refresh=False)
        self._bar.update(step - self._bar.n)

    def show(self, step: int, metrics: Mapping[str, float]) -> float:
        """Show the latest metrics and the images/s since the previous call (returned)."""
        now = time.perf_counter()
        rate = (step - self._last_step) * self.batch_size / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        self._bar.set_postfix({**{k: f"{v:.4g}" for k, v in metrics.items()}, "img/s": f"{rate:.0f}"},
                              refresh=False)
        self.update(step)
        return rate

    def write(self, message: str) -> None:
        if jax.process_index() == 0:
            self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()
