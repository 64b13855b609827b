"""The DReg large-batch study (experiment "dreg_study"): methods x batch sizes x seeds at a fixed epoch budget.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m jaxlab.main \\
        --config=configs/dreg/fashion_mnist_study.py --workdir=workdirs/dreg_fashion_mnist

Protocol (config.dreg_study):
- Every run trains config.training.num_epochs epochs (the same epoch budget at every batch size, so
  a larger batch takes fewer steps) and is evaluated on the test split after every epoch.
- A method is a set of nested config overrides (`overrides[method]`), applied to the study config;
  e.g. B0 {"dreg": {"enabled": False}}, DReg {"dreg": {"enabled": True, ...}}.
- A tuned method also has `candidates[method] = {candidate: overrides}` (applied after its
  overrides): each candidate is trained at `sweep_batch_sizes` (default: the largest batch) with
  `sweep_seeds`, on `train_examples` and evaluated on a validation split held out from the
  training set (the `validation_examples` train examples after them), never on the test split.
  The candidate with the best mean final validation accuracy is the method in the grid; a
  candidate with a diverged run is never chosen. results.json lists every candidate's score.
- `method_batch_sizes[method]` restricts a method to some of batch_sizes (default: all; the first method, the
  reference, runs at every one); `layer_follows[control] = tuned` makes a control replicate the dreg.layer of the
  candidate chosen for `tuned` (B1 and B2 stay DReg's controls when DReg's layer is tuned).
- Comparisons (`compare`, results.json "comparisons", results.md, differences.png): per batch size above the
  smallest, paired by seed with 95% Student-t intervals, the gap (reference at the smallest batch minus reference
  here), every method minus the reference and the share of the gap it closes, `subject` minus every other method,
  and a verdict: the subject closes part of the gap beyond its controls (layer_follows) only if every interval
  against them lies above 0.
- Runs form one resumable grid (jaxlab.experiments.grid): <workdir>/runs/<method>_bs<B>_seed<S>/
  (candidate runs under runs/sweep/), each record in <workdir>/records/; a finished or diverged
  (non-finite loss) run is never trained again and an interrupted one resumes from its checkpoint,
  so the study continues where it stopped (SIGTERM: the running run checkpoints, the study stops).

Outputs (rewritten after every run, "complete": false until the grid is done): results.json (per
run: method, batch_size, seed, final test accuracy, accuracy per epoch, steps per epoch, steps /
epochs to config.dreg_study.target_accuracy (null if never reached), mean step time, diverged,
the copies' final cosine; per method and batch size: mean and std over seeds, the step-time
overhead relative to the first method; the candidate selection; the comparisons), results.md (that summary as
tables and the verdict), convergence.png (`plot_convergence`: test accuracy vs epoch, one panel per batch size, one
line per method, mean over seeds; the target accuracy line, diverged runs flagged, coinciding curves named) and
differences.png (`plot_differences`: each method minus the reference with its interval, against the gap).
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from jaxlab import data, parallel
from jaxlab.classwise.metrics import mean_and_interval
from jaxlab.errors import ConfigError, NonFiniteError
from jaxlab.experiments import train as train_experiment
from jaxlab.experiments.grid import Grid
from jaxlab.train import Preempted
from jaxlab.train.metrics import write_json

RESULTS_FILE = "results.json"
PLOT_FILE = "convergence.png"
DIFFERENCES_PLOT_FILE = "differences.png"
TABLE_FILE = "results.md"


def extend_config(config) -> None:
    """config.dreg (the train experiment's fragment: what a method overrides) and config.dreg_study."""
    train_experiment.extend_config(config)
    config.dreg_study = ml_collections.ConfigDict(dict(
        methods=("B0", "DReg"),   # the grid's methods, in plot order
        overrides={"B0": {}, "DReg": {"dreg": {"enabled": True}}},  # method -> nested config overrides
        candidates={},            # tuned method -> {candidate -> overrides}, picked on a validation split
        batch_sizes=(128, 4096),
        seeds=(0, 1, 2),
        method_batch_sizes={},    # method -> the batch sizes it runs at (default: all of batch_sizes), e.g. the tuned
                                  # large-batch baselines only at the large ones
        layer_follows={},         # control -> tuned method whose chosen dreg.layer it replicates (B1/B2 the layer
                                  # DReg was tuned to, so they stay DReg's controls)
        subject="",               # the method under study: paired differences against every other method
        sweep_batch_sizes=(),     # where candidates are compared; () = the largest of batch_sizes
        sweep_seeds=(0,),
        train_examples=0,         # first N examples of the train split (0 = all)
        validation_examples=0,    # the next N train examples: the candidates' validation split
        test_examples=0,          # first N of the eval split (0 = all)
        target_accuracy=0.8,      # steps to reach this test accuracy (evaluated once per epoch)
    ))


def apply_overrides(config, overrides, where: str):
    """A copy of `config` with nested `overrides` ({"optimizer": {"name": "lars"}, ...}) set; unknown fields
    are ConfigErrors naming `where`."""
    config = config.copy_and_resolve_references()

    def set_nested(node, values, prefix):
        for key, value in values.items():
            if key not in node:
                raise ConfigError(where, f"override {prefix + key!r} is not a config field")
            if hasattr(value, "items") and hasattr(node[key], "items") and key not in ("tables",):
                set_nested(node[key], value, f"{prefix}{key}.")
            else:
                node[key] = value.to_dict() if hasattr(value, "to_dict") else value

    with config.unlocked():
        set_nested(config, overrides, "")
    return config


def run_name(method: str, batch_size: int, seed: int) -> str:
    return f"{method}_bs{batch_size}_seed{seed}"


def _sweep_batch_sizes(study) -> tuple[int, ...]:
    return tuple(study.sweep_batch_sizes) or (max(study.batch_sizes),)


def _batch_sizes_of(study, method: str) -> tuple[int, ...]:
    """The batch sizes `method` runs at: method_batch_sizes[method], else all of batch_sizes."""
    return tuple(study.method_batch_sizes.get(method, study.batch_sizes))


def _method_config(config, method: str, candidate: str | None = None, layer: str | None = None):
    """The study config with `method`'s overrides, then `candidate`'s, then dreg.layer = `layer` if given."""
    study = config.dreg_study
    run_config = apply_overrides(config, study.overrides.get(method, {}), f"dreg_study.overrides.{method}")
    if candidate is not None:
        run_config = apply_overrides(run_config, study.candidates[method][candidate],
                                     f"dreg_study.candidates.{method}.{candidate}")
    if layer is not None:
        run_config = apply_overrides(run_config, {"dreg": {"layer": layer}}, f"dreg_study.layer_follows.{method}")
    return run_config


def _followed_layer(config, method: str, selection: dict) -> str | None:
    """The dreg.layer of the candidate chosen for the method `method` follows (layer_follows), else None."""
    leader = config.dreg_study.layer_follows.get(method)
    return _method_config(config, leader, selection[leader]["chosen"]).dreg.layer if leader else None


def _grid_method_config(config, method: str, selection: dict):
    """`method`'s config in the grid: its chosen candidate (tuned methods), the layer of the one it follows."""
    return _method_config(config, method, selection.get(method, {}).get("chosen"),
                          _followed_layer(config, method, selection))


def _run_config(method_config, batch_size: int, seed: int):
    """The train config of one run (jaxlab.experiments.train.as_train_config): its batch size and seed."""
    run_config = train_experiment.as_train_config(method_config)
    run_config.training.batch_size = int(batch_size)
    run_config.seed = int(seed)
    run_config.eval_every_steps = 0  # once per epoch
    return run_config


def validate(config, *, num_devices: int, process_count: int = 1) -> None:
    """ConfigErrors for a study that cannot run, before any data is loaded or code compiled; every
    run's config (each method, candidate and batch size) is validated."""
    study = config.dreg_study
    methods = tuple(study.methods)
    if not methods or len(set(methods)) != len(methods):
        raise ConfigError("dreg_study.methods", f"{methods} must be distinct method names, at least one")
    for method in methods:
        if method not in study.overrides and method not in study.candidates:
            raise ConfigError("dreg_study.methods", f"{method!r} has no entry in dreg_study.overrides or "
                              "dreg_study.candidates")
    for method in study.candidates:
        if method not in methods:
            raise ConfigError("dreg_study.candidates", f"{method!r} is not one of dreg_study.methods {methods}")
        if not study.candidates[method]:
            raise ConfigError(f"dreg_study.candidates.{method}", "is empty")
    for field in ("batch_sizes", "seeds", "sweep_seeds"):
        values = tuple(study[field])
        if not values or len(set(values)) != len(values):
            raise ConfigError(f"dreg_study.{field}", f"{values} must be distinct values, at least one")
    if not 0 < study.target_accuracy <= 1:
        raise ConfigError("dreg_study.target_accuracy", f"must be in (0, 1], got {study.target_accuracy}")
    if config.training.num_train_steps > 0:
        raise ConfigError("training.num_train_steps", "the study fixes an epoch budget: set "
                          "training.num_epochs and leave num_train_steps at -1")
    for field in ("train_examples", "validation_examples", "test_examples"):
        if study[field] < 0:
            raise ConfigError(f"dreg_study.{field}", "must be >= 0 (0 = all)")
    if study.candidates and study.validation_examples <= 0:
        raise ConfigError("dreg_study.validation_examples", "tuned methods (dreg_study.candidates) need a "
                          "validation split held out from the training set: set validation_examples > 0")
    for method, sizes in study.method_batch_sizes.items():
        if method not in methods:
            raise ConfigError("dreg_study.method_batch_sizes", f"{method!r} is not one of dreg_study.methods {methods}")
        if not sizes or not set(sizes) <= set(study.batch_sizes):
            raise ConfigError(f"dreg_study.method_batch_sizes.{method}", f"{tuple(sizes)} must be a non-empty subset "
                              f"of dreg_study.batch_sizes {tuple(study.batch_sizes)}")
    if set(_batch_sizes_of(study, methods[0])) != set(study.batch_sizes):
        raise ConfigError("dreg_study.method_batch_sizes", f"the first method {methods[0]!r} is the reference at "
                          "every batch size (the gap and the overheads are measured against it): it must run at all")
    for method, leader in study.layer_follows.items():
        if method not in methods or leader not in study.candidates:
            raise ConfigError(f"dreg_study.layer_follows.{method}", f"maps a method of {methods} to a tuned method "
                              f"(one of dreg_study.candidates {tuple(study.candidates)}), got {method!r} -> {leader!r}")
    if study.subject and study.subject not in methods:
        raise ConfigError("dreg_study.subject", f"{study.subject!r} is not one of dreg_study.methods {methods}")
    for method in methods:
        leader = study.layer_follows.get(method)
        layers = {_method_config(config, leader, c).dreg.layer for c in study.candidates[leader]} if leader else {None}
        for candidate in study.candidates.get(method, {None: None}):
            sizes = set(_batch_sizes_of(study, method)) | (set(_sweep_batch_sizes(study)) if candidate else set())
            for layer in layers:
                method_config = _method_config(config, method, candidate, layer)
                for batch_size in sorted(sizes):
                    train_experiment.validate(_run_config(method_config, batch_size, 0), num_devices=num_devices,
                                              process_count=process_count)


def study_datasets(dataset: data.Dataset, study) -> tuple[data.Dataset, data.Dataset | None]:
    """(train subset + test subset, train subset + validation split or None), from the loaded dataset."""
    train, test = dataset.train, dataset.test
    n_train = study.train_examples or len(train)
    n_val = study.validation_examples
    if n_train + n_val > len(train):
        raise ConfigError("dreg_study.train_examples", f"{n_train} train + {n_val} validation examples, but "
                          f"{dataset.name} has {len(train)} training examples")
    n_test = study.test_examples or len(test)

    def make(x_test, y_test, name):
        return data.from_arrays(train.images[:n_train], train.labels[:n_train], x_test, y_test, name=name,
                                class_names=dataset.class_names)

    main = make(test.images[:n_test], test.labels[:n_test], dataset.name)
    sweep = (make(train.images[n_train:n_train + n_val], train.labels[n_train:n_train + n_val],
                  f"{dataset.name}-validation") if n_val else None)
    return main, sweep


def _read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_record(run_dir: str, steps_per_epoch: int, num_epochs: int, target: float, diverged: bool = False) -> dict:
    """One finished (or diverged) run's record, from its eval.jsonl and summary.json."""
    by_step = {r["step"]: r["accuracy"] for r in _read_jsonl(os.path.join(run_dir, "eval.jsonl"))}  # last wins
    per_epoch = [by_step.get((e + 1) * steps_per_epoch) for e in range(num_epochs)]
    reached = [e for e, acc in enumerate(per_epoch) if acc is not None and acc >= target]
    summary = {}
    if not diverged:
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
    return {
        "final_accuracy": None if diverged else summary["accuracy"],
        "accuracy_per_epoch": per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "epochs_to_target": reached[0] + 1 if reached else None,
        "steps_to_target": (reached[0] + 1) * steps_per_epoch if reached else None,
        "mean_step_seconds": summary.get("mean_step_seconds"),
        "diverged": diverged,
        **({"dreg_cosine": summary["dreg"]["dreg_cosine"]} if "dreg_cosine" in summary.get("dreg", {}) else {}),
    }


def _train_run(grid: Grid, name: str, run_config, dataset: data.Dataset, mesh, num_epochs: int,
               target: float) -> dict:
    """The record of one grid run: trained now unless finished before; a non-finite loss is a diverged run."""

    def train(run_dir: str) -> dict:
        try:
            train_experiment.train_run(run_config, run_dir, mesh=mesh, dataset=dataset)
        except NonFiniteError as e:
            write_json(os.path.join(run_dir, "diverged.json"), {"error": str(e)})
            return run_record(run_dir, steps_per_epoch, num_epochs, target, diverged=True)
        return run_record(run_dir, steps_per_epoch, num_epochs, target)

    steps_per_epoch = len(dataset.train) // run_config.training.batch_size
    return grid.run(name, train, config=run_config)


def _mean_std(values) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    return (float(np.mean(values)), float(np.std(values))) if values else (None, None)


def _mean_curve(curves: list[list]) -> list[float]:
    """Mean over runs of the accuracy per epoch, up to the last epoch that every run evaluated (None: not
    evaluated, e.g. after the run diverged)."""
    length = min((len(curve) for curve in curves), default=0)
    evaluated = next((e for e in range(length) if any(curve[e] is None for curve in curves)), length)
    return [_mean_std([curve[e] for curve in curves])[0] for e in range(evaluated)]


def aggregate(runs: list[dict], methods, batch_sizes) -> list[dict]:
    """Per (method, batch size): mean / std over seeds of final accuracy (finished runs), steps to target
    (runs that reached it), step time, the step-time overhead relative to methods[0], and the accuracy per epoch
    over all seeds, ending at the last epoch every seed evaluated (a diverged run ends the mean curve, which would
    otherwise average only the survivors and jump)."""
    rows = []
    for batch_size in batch_sizes:
        base_time = None
        for method in methods:
            group = [r for r in runs if r["method"] == method and r["batch_size"] == batch_size]
            accuracy, accuracy_std = _mean_std([r["final_accuracy"] for r in group])
            step_time, _ = _mean_std([r["mean_step_seconds"] for r in group])
            base_time = step_time if method == methods[0] else base_time
            rows.append({
                "method": method, "batch_size": batch_size, "num_runs": len(group),
                "num_diverged": sum(r["diverged"] for r in group),
                "final_accuracy_mean": accuracy, "final_accuracy_std": accuracy_std,
                "num_reached_target": sum(r["steps_to_target"] is not None for r in group),
                "steps_to_target_mean": _mean_std([r["steps_to_target"] for r in group])[0],
                "mean_step_seconds": step_time,
                "step_time_vs_first_method": step_time / base_time if step_time and base_time else None,
                "accuracy_per_epoch_mean": _mean_curve([r["accuracy_per_epoch"] for r in group]),
            })
    return rows


def paired_difference(runs: list[dict], method: str, versus: str, batch_size: int,
                      versus_batch_size: int | None = None) -> dict:
    """Final test accuracy of `method` at `batch_size` minus `versus` at `versus_batch_size` (default the same),
    paired by seed over the seeds where both finished: mean and 95% Student-t interval (None below 2 pairs)."""
    versus_batch_size = batch_size if versus_batch_size is None else versus_batch_size

    def by_seed(name, size):
        return {r["seed"]: r["final_accuracy"] for r in runs
                if r["method"] == name and r["batch_size"] == size and r["final_accuracy"] is not None}

    a, b = by_seed(method, batch_size), by_seed(versus, versus_batch_size)
    seeds = sorted(set(a) & set(b))
    mean, lower, upper = (float(v) for v in mean_and_interval([a[s] - b[s] for s in seeds], bounds=(-1.0, 1.0)))
    return {"method": method, "batch_size": batch_size, "versus": versus, "versus_batch_size": versus_batch_size,
            "seeds": seeds, **{k: None if np.isnan(v) else v for k, v in
                               (("mean", mean), ("lower", lower), ("upper", upper))}}


def _points(difference: dict) -> str:
    """'+1.23 [+0.40, +2.06]' (mean [interval] in accuracy points), or 'n/a (k pair(s))' below 2 pairs."""
    if difference["lower"] is None:
        return f"n/a ({len(difference['seeds'])} pair(s))"
    return "{:+.2f} [{:+.2f}, {:+.2f}]".format(*(100 * difference[k] for k in ("mean", "lower", "upper")))


def compare(runs: list[dict], methods, batch_sizes, subject: str = "", controls=()) -> list[dict]:
    """Per batch size above the smallest, paired by seed with 95% intervals:
    - gap: methods[0] (the reference) at the smallest batch minus the reference at this batch;
    - baseline_ratio: the reference's mean accuracy here over its mean at the smallest batch;
    - versus_reference: every other method minus the reference at this batch, and the share of the gap it closes;
    - subject: `subject` minus every other method at this batch;
    - verdict: whether the subject closes any of the gap beyond `controls` (its lower bound against each > 0)."""
    reference, sizes = methods[0], sorted(batch_sizes)
    rows = []
    for size in sizes[1:]:
        present = [m for m in methods if any(r["method"] == m and r["batch_size"] == size for r in runs)]
        gap = paired_difference(runs, reference, reference, sizes[0], size)
        means = {b: _mean_std([r["final_accuracy"] for r in runs if r["method"] == reference and r["batch_size"] == b])[0]
                 for b in (sizes[0], size)}
        versus_reference = [{**paired_difference(runs, m, reference, size),
                             "share_of_gap": None} for m in present if m != reference]
        for difference in versus_reference:
            if difference["mean"] is not None and gap["mean"]:
                difference["share_of_gap"] = difference["mean"] / gap["mean"]
        against = [paired_difference(runs, subject, m, size) for m in present if m != subject] \
            if subject in present else []
        rows.append({"batch_size": size, "reference": reference, "reference_batch_size": sizes[0], "gap": gap,
                     "baseline_ratio": means[size] / means[sizes[0]] if None not in means.values() else None,
                     "versus_reference": versus_reference, "subject": against,
                     "verdict": _verdict(size, sizes[0], reference, gap, subject, against, controls)})
    return rows


def _verdict(size, reference_size, reference, gap, subject, against, controls) -> str:
    """One line per batch size: the gap, the subject's paired differences, and whether it beats every control."""
    text = f"batch {size}: gap ({reference} at {reference_size} - at {size}) {_points(gap)} points"
    controls = [d for d in against if d["versus"] in controls]
    if not subject or not against:
        return text
    parts = ", ".join(f"{subject} - {d['versus']} {_points(d)}" for d in against)
    if not controls:
        return f"{text}; {parts}"
    if any(d["lower"] is None for d in controls):
        return f"{text}; {parts}; too few seeds for a verdict"
    beyond = all(d["lower"] > 0 for d in controls)
    names = " and ".join(d["versus"] for d in controls)
    return (f"{text}; {parts}; " + (f"{subject} closes part of the gap beyond {names} (every interval above 0)"
                                     if beyond else f"no evidence that {subject} closes any of the gap beyond {names}"))


def format_table(results: dict) -> str:
    """results.json's per (method, batch size) summary as a markdown table (results.md)."""
    def number(value, fmt):
        return "-" if value is None else format(value, fmt)

    lines = [f"{results['dataset']}: {results['train_examples']} train / {results['test_examples']} test examples, "
             f"{results['num_epochs']} epochs, seeds {results['seeds']}"
             + ("" if results.get("complete") else " (INCOMPLETE: the runs so far)"), "",
             f"| method | batch | runs | test accuracy (mean +- std) | reached {results['target_accuracy']} | "
             "steps to it (mean) | step time | vs first method |", "|---|---|---|---|---|---|---|---|"]
    for row in results["summary"]:
        if not row["num_runs"]:
            continue
        accuracy = (f"{number(row['final_accuracy_mean'], '.4f')} +- {number(row['final_accuracy_std'], '.4f')}"
                    + (f" ({row['num_diverged']} diverged)" if row["num_diverged"] else ""))
        lines.append(f"| {row['method']} | {row['batch_size']} | {row['num_runs']} | {accuracy} | "
                     f"{row['num_reached_target']}/{row['num_runs']} | {number(row['steps_to_target_mean'], '.0f')} | "
                     f"{number(row['mean_step_seconds'], '.4f')} s | "
                     f"{number(row['step_time_vs_first_method'], '.2f')}x |")
    for method, chosen in results["selection"].items():
        scores = ", ".join(f"{c}: {number(v, '.4f')}" for c, v in chosen["validation_accuracy"].items())
        lines.append(f"\n{method}: chose {chosen['chosen']} on the validation split at batch "
                     f"{chosen['batch_sizes']}, seeds {chosen['seeds']} ({scores})")
    for method, followed in results.get("followed_layers", {}).items():
        lines.append(f"\n{method} replicates the layer chosen for {followed['follows']}: "
                     f"{followed['layer'] or 'the classifier'!r}")
    for row in results.get("comparisons", []):
        lines += ["", f"Batch {row['batch_size']}, paired by seed (95% t intervals, accuracy points): "
                  f"{row['reference']} keeps {number(row['baseline_ratio'], '.1%')} of its batch-"
                  f"{row['reference_batch_size']} accuracy.", "",
                  f"| method | minus {row['reference']} | share of the gap closed |", "|---|---|---|",
                  f"| gap: {row['reference']} at {row['reference_batch_size']} | {_points(row['gap'])} | - |"]
        lines += [f"| {d['method']} | {_points(d)} | {number(d['share_of_gap'], '.0%')} |"
                  for d in row["versus_reference"]]
        lines += ["", f"Verdict: {row['verdict']}"]
    return "\n".join(lines) + "\n"


# One style per method, in results["methods"] order; later methods are drawn on top with thinner lines and smaller
# markers, so a curve that coincides with an earlier one leaves that one visible around it.
METHOD_MARKERS = ("o", "s", "^", "D", "v", "P", "*", "h")
METHOD_LINE_STYLES = ("-", "--", "-.", ":")
DIVERGED_MARKER = dict(linestyle="none", marker="X", markersize=11, markeredgecolor="black", markeredgewidth=1.0)
SAME_CURVE_TOLERANCE = 0.005  # curves this close (accuracy) at every epoch are named together in the panel title


def _last_finite_epoch(accuracy_per_epoch) -> tuple[int, float | None]:
    """(the last epoch with an evaluation, its accuracy), (0, None) for a run with none."""
    evaluated = [(e + 1, acc) for e, acc in enumerate(accuracy_per_epoch) if acc is not None]
    return evaluated[-1] if evaluated else (0, None)


def plot_convergence(results: dict, path: str) -> Figure:
    """results.json's test accuracy vs epoch: a panel per batch size, a line per method (mean over seeds, up to
    the last epoch every seed evaluated), the target accuracy as a labelled horizontal line, an X labelled "diverged" at
    each diverged run's last evaluated epoch (epoch 0 at the panel's foot when it has none) and the diverged counts
    in the panel title; methods whose curves agree within SAME_CURVE_TOLERANCE are named there too. Saves to
    `path`, returns the figure; a committed results.json is redrawn with plot_convergence(json.load(f), path)."""
    methods, batch_sizes, target = results["methods"], results["batch_sizes"], results["target_accuracy"]
    last = max(len(methods) - 1, 1)
    styles = {method: dict(color=f"C{i}", marker=METHOD_MARKERS[i % len(METHOD_MARKERS)], markerfacecolor="none",
                           markeredgewidth=1.4, linestyle=METHOD_LINE_STYLES[i % len(METHOD_LINE_STYLES)],
                           linewidth=1.0 + 1.6 * (last - i) / last, markersize=5 + 5 * (last - i) / last, zorder=2 + i)
               for i, method in enumerate(methods)}
    fig = Figure(figsize=(4.2 * len(batch_sizes) + 2.6, 3.8), layout="constrained")
    axes = fig.subplots(1, len(batch_sizes), squeeze=False, sharey=True)[0]
    handles = {}
    for ax, batch_size in zip(axes, batch_sizes):
        curves, diverged = {}, []
        for row in (r for r in results["summary"] if r["batch_size"] == batch_size and r["num_runs"]):
            curve = row["accuracy_per_epoch_mean"]
            epochs = [e + 1 for e, acc in enumerate(curve) if acc is not None]
            handles[row["method"]], = ax.plot(epochs, [acc for acc in curve if acc is not None],
                                              label=row["method"], **styles[row["method"]])
            curves[row["method"]] = curve
            if row["num_diverged"]:
                diverged.append(f"{row['method']} {row['num_diverged']}/{row['num_runs']}")
        flagged = set()
        for run in (r for r in results["runs"] if r["batch_size"] == batch_size and r["diverged"]):
            epoch, accuracy = _last_finite_epoch(run["accuracy_per_epoch"])
            where = ax.transData if accuracy is not None else ax.get_xaxis_transform()  # y: the panel's foot
            point, color = (epoch, 0.03 if accuracy is None else accuracy), styles[run["method"]]["color"]
            ax.plot(*point, transform=where, markerfacecolor=color, zorder=3 + len(methods), **DIVERGED_MARKER)
            if (run["method"], epoch) not in flagged:
                ax.annotate(f"{run['method']} diverged", point, xycoords=where, xytext=(8, 5),
                            textcoords="offset points", fontsize=8, color=color, zorder=4 + len(methods),
                            bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.85))
                flagged.add((run["method"], epoch))
        same = [f"{a} \u2248 {b}" for i, a in enumerate(curves) for b in list(curves)[i + 1:]
                if len(curves[a]) == len(curves[b]) and all(
                    x is not None and y is not None and abs(x - y) <= SAME_CURVE_TOLERANCE
                    for x, y in zip(curves[a], curves[b]))]
        handles[f"target accuracy {target:g}"] = ax.axhline(target, color="black", linestyle=":", linewidth=1.2,
                                                            zorder=1)
        ax.set_title("\n".join([f"batch {batch_size}"]
                               + ([f"diverged: {', '.join(diverged)}"] if diverged else [])
                               + ([f"{', '.join(same)} (within {SAME_CURVE_TOLERANCE:g})"] if same
                                  else [])), fontsize=10)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test accuracy (mean over {len(results['seeds'])} seeds)")
    if any(r["diverged"] for r in results["runs"]):
        handles["diverged run: its last evaluated epoch (0 = none)"] = Line2D(
            [], [], markerfacecolor="white", **DIVERGED_MARKER)
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8)
    fig.savefig(path, dpi=120)
    return fig


def plot_differences(results: dict, path: str) -> Figure:
    """results.json's paired comparisons: a panel per batch size above the smallest, a row per method (labelled
    with its number of seed pairs) with its mean paired difference to the reference at that batch and the 95%
    interval (accuracy points; a point alone below 2 pairs); 0 is the reference at that batch, the dashed line and
    band the reference at the smallest batch (closing the whole gap). The subject is drawn in red. Saves to
    `path`, returns the figure."""
    rows = [row for row in results["comparisons"] if row["gap"]["lower"] is not None]  # >= 2 seeds
    fig = Figure(figsize=(5.0 * len(rows), 0.45 * len(results["methods"]) + 2.2), layout="constrained")
    subject = next((d["method"] for row in rows for d in row["subject"]), None)
    for ax, row in zip(fig.subplots(1, len(rows), squeeze=False)[0], rows):
        gap = {k: 100 * row["gap"][k] for k in ("mean", "lower", "upper")}
        band = ax.axvspan(gap["lower"], gap["upper"], color="0.85", zorder=0)
        level = ax.axvline(gap["mean"], color="0.3", linestyle="--", linewidth=1.2)
        zero = ax.axvline(0, color="black", linewidth=1.0)
        differences = [d for d in row["versus_reference"] if d["mean"] is not None][::-1]
        for y, d in enumerate(differences):
            mean = 100 * d["mean"]
            errors = [[0], [0]] if d["lower"] is None else [[mean - 100 * d["lower"]], [100 * d["upper"] - mean]]
            ax.errorbar(mean, y, xerr=errors, fmt="o", color="C3" if d["method"] == subject else "C0", capsize=4,
                        markersize=6)
        ax.set_yticks(range(len(differences)), [f"{d['method']} (n={len(d['seeds'])})" for d in differences])
        ax.set_ylim(-0.6, len(differences) - 0.4)
        ax.set_title(f"batch {row['batch_size']}: gap {_points(row['gap'])} points", fontsize=10)
        ax.set_xlabel(f"test accuracy minus {row['reference']} at this batch (points)")
        ax.grid(axis="x", alpha=0.3)
    if rows:
        fig.legend([zero, level, band], [f"{rows[0]['reference']} at this batch",
                                         f"{rows[0]['reference']} at batch {rows[0]['reference_batch_size']}",
                                         "its 95% interval"], loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle(f"{results['dataset']}: mean paired difference over seeds (n pairs) with 95% t intervals",
                 fontsize=10)
    fig.savefig(path, dpi=120)
    return fig


def _select_candidates(config, grid: Grid, sweep_dataset, mesh, num_epochs) -> dict:
    """{method: {"chosen", "validation_accuracy": {candidate: mean}}} from the validation sweep."""
    study, selection = config.dreg_study, {}
    for method in (m for m in study.methods if m in study.candidates):
        scores = {}
        for candidate in study.candidates[method]:
            method_config = _method_config(config, method, candidate)
            accuracies = []
            for batch_size in _sweep_batch_sizes(study):
                for seed in study.sweep_seeds:
                    name = "sweep/" + run_name(f"{method}-{candidate}", batch_size, seed)
                    record = _train_run(grid, name, _run_config(method_config, batch_size, seed), sweep_dataset,
                                        mesh, num_epochs, 1.0)
                    accuracies.append(record["final_accuracy"])
                    grid.log(f"{name}: validation accuracy {record['final_accuracy']}")
            scores[candidate] = None if None in accuracies else float(np.mean(accuracies))
        valid = {c: s for c, s in scores.items() if s is not None}
        if not valid:
            raise FloatingPointError(f"every candidate of {method} diverged in the validation sweep: {scores}")
        selection[method] = {"chosen": max(valid, key=valid.get), "validation_accuracy": scores,
                             "batch_sizes": list(_sweep_batch_sizes(study)), "seeds": list(study.sweep_seeds)}
        grid.log(f"{method}: chose {selection[method]['chosen']!r} (validation accuracy {scores})")
    return selection


def _run_names(study) -> list[str]:
    """Every run of the study, in the order they are trained (candidates first, then the grid a seed at a time)."""
    names = ["sweep/" + run_name(f"{m}-{c}", b, s) for m in study.methods for c in study.candidates.get(m, {})
             for b in _sweep_batch_sizes(study) for s in study.sweep_seeds]
    return names + [run_name(m, b, s) for m, b, s in _grid_cells(study)]


def _grid_cells(study) -> list[tuple[str, int, int]]:
    """(method, batch size, seed) of every grid run, a seed at a time."""
    return [(m, b, s) for s in study.seeds for b in study.batch_sizes for m in study.methods
            if b in _batch_sizes_of(study, m)]


def run(config, workdir: str) -> dict:
    """Run the study described in the module docstring into `workdir`; returns the results dict, or
    {"finished": False, "preempted": True} when SIGTERM stopped it (rerun to continue)."""
    mesh = parallel.make_mesh()
    validate(config, num_devices=mesh.size, process_count=jax.process_count())
    study = config.dreg_study
    main_dataset, sweep_dataset = study_datasets(data.load_dataset(config.data), study)
    num_epochs = int(np.ceil(config.training.num_epochs))
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    grid = Grid(workdir, "dreg_study", names=_run_names(study))
    grid.log(f"{main_dataset.name}: {len(main_dataset.train)} train / {len(main_dataset.test)} test"
             + (f" / {len(sweep_dataset.test)} validation" if sweep_dataset else "") + f" examples; "
             f"{mesh.size} devices")
    try:
        with grid.watch():
            results = _run_grid(config, grid, workdir, main_dataset, sweep_dataset, mesh, num_epochs)
    except Preempted as stop:
        grid.log(f"{stop}")
        return {"finished": False, "preempted": True}
    for row in results["summary"]:
        grid.log(f"{row['method']:>8} batch {row['batch_size']:>5}: accuracy {row['final_accuracy_mean']} "
                 f"+- {row['final_accuracy_std']}, steps to target {row['steps_to_target_mean']} "
                 f"({row['num_reached_target']}/{row['num_runs']}), step time x{row['step_time_vs_first_method']}")
    return results


def _run_grid(config, grid: Grid, workdir: str, main_dataset, sweep_dataset, mesh, num_epochs: int) -> dict:
    study = config.dreg_study
    selection = _select_candidates(config, grid, sweep_dataset, mesh, num_epochs)
    cells = _grid_cells(study)
    followed = {method: {"follows": leader, "layer": _followed_layer(config, method, selection)}
                for method, leader in study.layer_follows.items()}
    runs = []
    for i, (method, batch_size, seed) in enumerate(cells):
        method_config = _grid_method_config(config, method, selection)
        record = _train_run(grid, run_name(method, batch_size, seed), _run_config(method_config, batch_size, seed),
                            main_dataset, mesh, num_epochs, study.target_accuracy)
        runs.append({"method": method, "batch_size": batch_size, "seed": seed, **record})
        grid.log(f"[{i + 1}/{len(cells)}] {run_name(method, batch_size, seed)}: test accuracy "
                 f"{record['final_accuracy']}, per epoch {record['accuracy_per_epoch']}")
        rows = aggregate(runs, tuple(study.methods), tuple(study.batch_sizes))
        results = {  # rewritten after every run: a stopped study leaves the runs so far ("complete": false)
            "complete": i + 1 == len(cells),
            "dataset": main_dataset.name, "train_examples": len(main_dataset.train),
            "test_examples": len(main_dataset.test), "num_epochs": num_epochs, "num_devices": mesh.size,
            "target_accuracy": study.target_accuracy, "methods": list(study.methods),
            "batch_sizes": list(study.batch_sizes), "seeds": list(study.seeds), "selection": selection,
            "followed_layers": followed, "summary": rows,
            "comparisons": compare(runs, tuple(study.methods), tuple(study.batch_sizes), study.subject,
                                   tuple(study.layer_follows)),
            "runs": runs,
        }
        write_json(os.path.join(workdir, RESULTS_FILE), results)
        with open(os.path.join(workdir, TABLE_FILE), "w") as f:
            f.write(format_table(results))
        if i + 1 == len(cells) or cells[i + 1][2] != seed:  # the plots after each seed's block
            plot_convergence(results, os.path.join(workdir, PLOT_FILE))
            if any(c["gap"]["lower"] is not None for c in results["comparisons"]):
                plot_differences(results, os.path.join(workdir, DIFFERENCES_PLOT_FILE))
    return results
