"""The `augmentation_sweep` experiment: one model per (strength, seed), analysis, intervention, report.

    python -m jaxlab.main --config=configs/default.py     # the small digits sweep

Each run trains `config` with `config.augment.tables[config.sweep.parameter]` set to the run's
strength (the pipeline refers to that name, e.g. "rrc(size=32, scale=(crop_scale, 1.0))") and
`config.seed` set to the run's seed. The runs form one resumable grid (jaxlab.experiments.grid):
<workdir>/runs/<run>/ while it trains (an interrupted run continues from its last checkpoint), then
<workdir>/predictions/<run>.npz (labels, predictions) and its record in <workdir>/records/; a finished
run is never trained again, so a sweep interrupted anywhere (SIGTERM included) continues where it
stopped; shards of a sweep on several machines write into the same folders and merge.
When every run's predictions exist, the analysis (jaxlab.classwise.analyze) is written to
analysis.json and per_class.csv, then the class-conditional intervention retrains the selected
pairs with weaker crops (jaxlab.classwise.intervention) and report.md summarises everything.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import zipfile
import zlib

import jax
import ml_collections
import numpy as np

from jaxlab import data, parallel
from jaxlab.classwise import intervention as intervention_lib
from jaxlab.classwise import real_labels
from jaxlab.classwise.analysis import analyze, per_class_rows
from jaxlab.errors import ConfigError, DataError
from jaxlab.experiments import train as train_experiment
from jaxlab.experiments.grid import Grid
from jaxlab.experiments.sweep_report import write_report
from jaxlab.train import Preempted
from jaxlab.train.metrics import write_json

CSV_COLUMNS = ("strength", "seed", "class", "n", "accuracy", "multilabel_accuracy", "false_positives")


def extend_config(config) -> None:
    """config.dreg (each run is a `train` run), config.sweep (the grid of runs) and config.classwise (the analysis)."""
    train_experiment.extend_config(config)
    config.sweep = ml_collections.ConfigDict(dict(
        parameter="crop_scale",   # the config.augment.tables name each run sets to its strength
        strengths=(0.08, 0.25, 0.5, 1.0),
        seeds=(0, 1, 2),
        num_shards=1,             # spread the runs over machines: this process runs
        shard_index=0,            #   runs i with i % num_shards == shard_index
        keep_run_checkpoints=False,  # False: delete a run's checkpoints once its predictions are saved
    ))
    config.classwise = ml_collections.ConfigDict(dict(
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


def validate(config, *, num_devices: int, process_count: int = 1) -> None:
    """Raise ConfigError for a sweep that cannot run (before any data is loaded or code compiled)."""
    sweep, cw = config.sweep, config.classwise
    if not sweep.strengths:
        raise ConfigError("sweep.strengths", "is empty; give the strengths to train, e.g. (0.08, 0.5, 1.0)")
    if any(not 0 < s <= 1 for s in sweep.strengths) or len(set(sweep.strengths)) != len(sweep.strengths):
        raise ConfigError("sweep.strengths", f"{tuple(sweep.strengths)} must be distinct values in (0, 1] "
                          "(the RRC scale lower bound)")
    if not sweep.seeds or len(set(sweep.seeds)) != len(sweep.seeds):
        raise ConfigError("sweep.seeds", f"{tuple(sweep.seeds)} must be distinct seeds, at least one")
    if (not re.search(rf"\b{re.escape(sweep.parameter)}\b", str(config.augment.pipeline))
            and sweep.parameter != config.data.rrc_scale_table):
        raise ConfigError("sweep.parameter", f"{sweep.parameter!r} does not appear in config.augment.pipeline "
                          f"({config.augment.pipeline!r}); use it as a parameter there, e.g. "
                          f"rrc(size=32, scale=({sweep.parameter}, 1.0)), or, for an encoded-image source cropped "
                          f"on the host, set config.data.rrc_scale_table={sweep.parameter!r}")
    if not 0 <= sweep.shard_index < sweep.num_shards:
        raise ConfigError("sweep.shard_index", f"must be in [0, num_shards={sweep.num_shards})")
    if cw.reference_strength and cw.reference_strength not in tuple(sweep.strengths):
        raise ConfigError("classwise.reference_strength", f"{cw.reference_strength} is not one of sweep.strengths "
                          f"{tuple(sweep.strengths)} (0 = the strength with the best average accuracy)")
    if not 0 < cw.alpha < 1:
        raise ConfigError("classwise.alpha", f"must be in (0, 1), got {cw.alpha}")
    if cw.correction not in ("none", "bonferroni"):
        raise ConfigError("classwise.correction", f"{cw.correction!r}: choose none or bonferroni")
    if cw.intervention_selection not in intervention_lib.SELECTIONS:
        raise ConfigError("classwise.intervention_selection",
                          f"{cw.intervention_selection!r}: choose one of {intervention_lib.SELECTIONS}")
    if cw.intervention_pairs < 1:
        raise ConfigError("classwise.intervention_pairs", f"must be >= 1 (pairs to treat), got "
                          f"{cw.intervention_pairs}; set classwise.intervention=False for no intervention")
    if not 0 < cw.intervention_strength <= 1:
        raise ConfigError("classwise.intervention_strength", "must be in (0, 1]")
    if cw.real_json and not os.path.isfile(cw.real_json):
        raise ConfigError("classwise.real_json", f"{cw.real_json!r} is not a file (ImageNet ReaL real.json)")
    train_experiment.validate(config, num_devices=num_devices, process_count=process_count)


def run_name(strength: float, seed: int) -> str:
    return f"strength={strength:g}_seed={seed}"


def _run_config(config, *, seed: int, table: list[float] | float):
    """The train config of one run: its seed, and the sweep's table set to one strength or per-class strengths."""
    values = {"default": float(table)} if np.ndim(table) == 0 else {str(k): float(v) for k, v in enumerate(table)}
    run_config = train_experiment.as_train_config(config)
    run_config.seed = int(seed)
    tables = run_config.augment.tables.to_dict()
    tables[config.sweep.parameter] = values
    run_config.augment.tables = tables
    return run_config


def _save_predictions(path: str, result: dict) -> None:
    tmp = f"{path}.tmp.npz"
    np.savez_compressed(tmp, labels=result["labels"], predictions=result["predictions"])
    os.replace(tmp, path)


def _train_runs(config, grid: Grid, runs: list[tuple[str, object]], dataset, mesh) -> None:
    """Each (name, run_config) as a grid run: trained unless finished, its predictions saved to
    <workdir>/predictions/<name>.npz; raises Preempted when SIGTERM stopped a run."""

    def train(name, run_config):
        def fn(run_dir: str) -> dict:
            result = train_experiment.train_run(run_config, run_dir, dataset=dataset, mesh=mesh)
            if jax.process_index() == 0:
                _save_predictions(os.path.join(grid.workdir, "predictions", f"{name}.npz"), result)
                if not config.sweep.keep_run_checkpoints:
                    shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
            return {"accuracy": result["accuracy"], "step": result["step"]}
        return fn

    for name, run_config in runs:
        grid.run(name, train(name, run_config), config=run_config)


def _load_predictions(workdir: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions[run]) from <workdir>/predictions; a damaged file is a DataError naming it."""
    labels, predictions = None, []
    for name in names:
        path = os.path.join(workdir, "predictions", f"{name}.npz")
        try:
            with np.load(path) as f:
                run_labels, run_predictions = f["labels"], f["predictions"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise DataError(f"{path} is damaged ({type(e).__name__}: {e}); delete it and its record "
                            f"{os.path.join(workdir, 'records', name + '.json')}, then rerun to train that run "
                            "again") from None
        if labels is not None and not np.array_equal(labels, run_labels):
            raise DataError(f"run {name} was evaluated on different labels than the others ({path}); all runs "
                            "of a sweep must share the eval split")
        labels = run_labels
        predictions.append(run_predictions)
    return labels, np.stack(predictions)


def _eval_file_names(source, workdir: str) -> list[str]:
    """The eval split's `file_name` feature in its order (read once, cached in the workdir)."""
    path = os.path.join(workdir, "eval_file_names.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    print(f"reading the file names of the {len(source)} eval examples (once) to match ReaL labels", flush=True)
    names = []
    for i in range(len(source)):
        name = source.data_source[i]["file_name"]
        names.append(name.decode() if isinstance(name, bytes) else str(name))
    write_json(path, names)
    return names


def _eval_label_sets(config, dataset, workdir: str):
    """Multi-labels of the eval split: from config.classwise.real_json (ImageNet ReaL) or the dataset."""
    if not config.classwise.real_json:
        return dataset.eval_label_sets
    real = real_labels.load_real_json(config.classwise.real_json)
    if isinstance(dataset.test, data.TfdsSource):  # tfds imagenet2012: match by file name, any order
        return real_labels.label_sets_for_file_names(real, _eval_file_names(dataset.test, workdir),
                                                     dataset.num_classes)
    if len(real) != len(dataset.test):
        raise ConfigError("classwise.real_json", f"has {len(real)} label lists but the eval split has "
                          f"{len(dataset.test)} examples; an in-memory eval split must be the validation set "
                          "in file order")
    return real_labels.label_sets_matrix(real, dataset.num_classes)


def write_per_class_csv(path: str, rows: list[dict]) -> None:
    """per_class.csv: one row per (strength, seed, class); multilabel_accuracy empty without multi-labels."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})


def run(config, workdir: str, *, dataset: data.Dataset | None = None, mesh=None) -> dict:
    """Train the sweep's runs (this shard's), then, once all exist, analyse, intervene and report;
    {"finished": False, "preempted": True} when SIGTERM stopped it (rerun to continue)."""
    mesh = mesh if mesh is not None else parallel.make_mesh()
    validate(config, num_devices=mesh.size, process_count=jax.process_count())
    dataset = dataset if dataset is not None else data.load_dataset(config.data)
    os.makedirs(os.path.join(workdir, "predictions"), exist_ok=True)
    label_sets = _eval_label_sets(config, dataset, workdir)
    groups = tuple(config.classwise.class_groups) or dataset.class_groups
    if groups is not None and len(groups) != dataset.num_classes:
        raise ConfigError("classwise.class_groups", f"has {len(groups)} entries for {dataset.num_classes} classes")
    sweep = config.sweep
    runs = [(run_name(s, r), _run_config(config, seed=int(r), table=float(s))) for s in sweep.strengths
            for r in sweep.seeds]
    mine = [run for i, run in enumerate(runs) if i % sweep.num_shards == sweep.shard_index]
    grid = Grid(workdir, "augmentation_sweep", names=[name for name, _ in mine])
    try:
        with grid.watch():
            return _train_and_analyse(config, grid, dataset, mesh, runs, mine, label_sets, groups)
    except Preempted as stop:
        grid.log(f"{stop}")
        return {"finished": False, "preempted": True}


def _train_and_analyse(config, grid: Grid, dataset, mesh, runs, mine, label_sets, groups) -> dict:
    workdir, sweep, cw = grid.workdir, config.sweep, config.classwise
    strengths, seeds = [float(s) for s in sweep.strengths], [int(r) for r in sweep.seeds]
    _train_runs(config, grid, mine, dataset, mesh)
    names = [name for name, _ in runs]
    missing = [n for n in names if not os.path.exists(os.path.join(workdir, "predictions", f"{n}.npz"))]
    if missing:
        grid.log(f"{len(names) - len(missing)} of {len(names)} runs finished; the other shards still have to "
                 f"write {len(missing)} (e.g. {missing[0]}). Rerun with --config.sweep.num_shards=1 when they are "
                 "done: finished runs are skipped and the analysis is written.")
        return {"finished": False, "missing_runs": missing}
    if jax.process_index() != 0:
        return {"finished": True}

    labels, predictions = _load_predictions(workdir, names)
    predictions = predictions.reshape(len(strengths), len(seeds), -1)
    options = dict(reference_strength=cw.reference_strength or None, alpha=cw.alpha, min_drop=cw.min_drop,
                   correction=cw.correction, symmetric_threshold=cw.symmetric_threshold,
                   cooccurrence_threshold=cw.cooccurrence_threshold)
    analysis = analyze(strengths, labels, predictions, dataset.num_classes, class_names=dataset.class_names,
                       label_sets=label_sets, groups=groups, **options)
    write_json(os.path.join(workdir, "analysis.json"), analysis)
    write_per_class_csv(os.path.join(workdir, "per_class.csv"),
                        per_class_rows(strengths, seeds, labels, predictions, dataset.num_classes, label_sets))

    comparison = None
    if cw.intervention:
        comparison = _intervene(config, grid, dataset, mesh, strengths, seeds, labels, predictions, analysis)
    report = write_report(workdir, analysis, comparison)
    grid.log(f"analysis: {os.path.join(workdir, 'analysis.json')}; report: {report}")
    return {"finished": True, "analysis": analysis, "intervention": comparison, "report": report}


def _intervene(config, grid: Grid, dataset, mesh, strengths, seeds, labels, predictions, analysis):
    """Retrain every seed with the per-class table (raises Preempted if SIGTERM stopped a run). The returned
    comparison (intervention.json) keeps every candidate pair with its status, so the report can say why each
    affected class was or was not treated."""
    cw, workdir = config.classwise, grid.workdir
    best = analysis["reference_index"]
    candidates = intervention_lib.rank_pairs(strengths, labels, predictions, dataset.num_classes, best_index=best,
                                             selection=cw.intervention_selection, num_pairs=cw.intervention_pairs,
                                             analysis=analysis)
    pairs = [[c["source"], c["absorber"]] for c in candidates if c["status"] == "treated"]
    selection = dict(selection=cw.intervention_selection, num_pairs=cw.intervention_pairs, candidates=candidates,
                     weakest_strength=max(strengths), baseline_strength=strengths[best],
                     treated_strength=cw.intervention_strength)
    if not pairs:
        grid.log("intervention: no class to treat (no false-positive growth / no affected class)")
        return {"pairs": [], "treated": [], **selection}
    treated = sorted({k for pair in pairs for k in pair})
    table = intervention_lib.intervention_table(treated, dataset.num_classes,
                                                treated_strength=cw.intervention_strength,
                                                default_strength=strengths[best])
    write_json(os.path.join(workdir, "intervention_table.json"), table)
    # The run names carry the table's hash: changing the analysis options (hence the table) trains anew.
    tag = hashlib.sha1(json.dumps(table).encode()).hexdigest()[:8]
    runs = [(f"intervention_{tag}_seed={r}", _run_config(config, seed=r, table=table)) for r in seeds]
    _train_runs(config, grid, runs, dataset, mesh)
    treated_labels, treated_predictions = _load_predictions(workdir, [name for name, _ in runs])
    if not np.array_equal(treated_labels, labels):
        raise ValueError("the intervention runs were evaluated on different labels than the sweep")
    comparison = intervention_lib.compare(labels, predictions[best], treated_predictions, dataset.num_classes,
                                          treated)
    comparison.update(pairs=pairs, table=table, **selection)
    write_json(os.path.join(workdir, "intervention.json"), comparison)
    return comparison
