"""Plots and tables shared by the experiments (a helper module, not an experiment).

K-prior experiments (kprior_adaptation, kprior_deep): `RECORD_KEYS` (the fields every record of their
results.json has), `summarize(records)` (test accuracy over seeds per task, method and memory fraction),
`memory_table(records)` (that summary as markdown tables: results.md) and `plot_accuracy_vs_memory(records, path)`
(one panel per task, accuracy against memory size).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# ------------------------------------------------------------------------------------ K-prior records

RECORD_KEYS = ("task", "method", "memory_fraction", "seed", "test_accuracy", "grad_error")

# Panel order and titles: the full-batch adaptation tasks, then the trainer's (deep) tasks.
KPRIOR_TASK_TITLES = {
    "add_data": "add data",
    "remove_data": "remove data",
    "change_regulariser": "change regulariser",
    "change_model": "change model",
    "continual": "continual (domain-incremental)",
    "continual_multihead": "continual (task-incremental, multi-head)",
}
# method -> (label, colour, marker, line style)
KPRIOR_METHOD_STYLES = {
    "kprior": ("K-prior", "tab:blue", "o", "-"),
    "replay": ("Replay", "tab:orange", "s", "-"),
    "finetune": ("Fine-tuning (no memory)", "tab:gray", None, ":"),
    "batch": ("Batch (retraining on all data)", "black", None, "--"),
}
# Methods that use no memory (recorded at every memory fraction with the same accuracy) -> the hatch of their
# band: drawn as a horizontal line and a hatched band across the panel, beneath the methods with a memory.
MEMORY_FREE_HATCHES = {"finetune": "\\\\\\\\", "batch": "////"}


def summarize(records: list[dict]) -> dict:
    """{(task, method, memory_fraction): (mean, std, min, max) of test_accuracy over seeds}."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["task"], r["method"], r["memory_fraction"]), []).append(r["test_accuracy"])
    return {key: (float(np.mean(v)), float(np.std(v)), float(np.min(v)), float(np.max(v)))
            for key, v in groups.items()}


def memory_table(records: list[dict]) -> str:
    """summarize(records) as markdown, a table per task: a row per method (KPRIOR_METHOD_STYLES order), a column
    per memory fraction (largest first, with the memory's mean size in points when the records have it); cells
    are test accuracy in %, mean +- std over seeds (population std), with the number of seeds."""
    summary = summarize(records)
    lines = []
    for task in [t for t in KPRIOR_TASK_TITLES if any(r["task"] == t for r in records)]:
        fractions = sorted({r["memory_fraction"] for r in records if r["task"] == task}, reverse=True)

        def size(fraction):
            sizes = [r["memory_size"] for r in records if r["task"] == task and r["memory_fraction"] == fraction
                     and r.get("memory_size") and r["method"] in ("kprior", "replay")]
            return f"{fraction:.0%}" + (f" ({np.mean(sizes):,.0f} points)" if sizes else "")

        seeds = sorted({r["seed"] for r in records if r["task"] == task})
        lines += [f"{KPRIOR_TASK_TITLES[task]}: test accuracy (%), mean +- std over seeds {seeds}", "",
                  "| method | " + " | ".join(size(f) for f in fractions) + " |",
                  "|---" * (len(fractions) + 1) + "|"]
        for method in [m for m in KPRIOR_METHOD_STYLES if (task, m, fractions[0]) in summary]:
            cells = [summary.get((task, method, f)) for f in fractions]
            lines.append(f"| {KPRIOR_METHOD_STYLES[method][0]} | " + " | ".join(
                "-" if c is None else f"{100 * c[0]:.1f} +- {100 * c[1]:.1f}" for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_accuracy_vs_memory(records: list[dict], path: str, title: str = "") -> Figure:
    """One panel per task: test accuracy (%) against memory size (% of past data, log axis ticked at the records'
    memory fractions), one line per method: the mean over seeds, shaded from the min to the max over seeds.
    The methods of MEMORY_FREE_HATCHES are horizontal lines over the whole axis, their bands hatched beneath. Tasks
    and methods in the orders of KPRIOR_TASK_TITLES / KPRIOR_METHOD_STYLES (others after them, in record order).
    Saves the figure to `path` and returns it."""
    stats = summarize(records)
    present = list(dict.fromkeys(r["task"] for r in records))
    tasks = [t for t in KPRIOR_TASK_TITLES if t in present] + [t for t in present if t not in KPRIOR_TASK_TITLES]
    methods = list(KPRIOR_METHOD_STYLES) + [m for m in dict.fromkeys(r["method"] for r in records)
                                            if m not in KPRIOR_METHOD_STYLES]
    num_seeds = len({r["seed"] for r in records})
    columns = max(1, len(tasks) if len(tasks) <= 3 else -(-len(tasks) // 2))
    rows = max(1, -(-len(tasks) // columns))
    figure = Figure(figsize=(4.2 * columns + 2.6, 3.4 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    axes = grid.ravel()
    for axis in axes[len(tasks):]:
        axis.set_visible(False)
    handles = {}
    for axis, task in zip(axes, tasks):
        for method in methods:
            label, color, marker, line = KPRIOR_METHOD_STYLES.get(method, (method, None, "^", "-"))
            keys = sorted((key for key in stats if key[:2] == (task, method)), key=lambda key: key[2])
            if not keys:
                continue
            mean, _, low, high = (np.array([stats[key][i] for key in keys]) for i in range(4))
            if method in MEMORY_FREE_HATCHES:
                band = axis.axhspan(100 * low[-1], 100 * high[-1], facecolor="none", edgecolor=color, alpha=0.4,
                                    hatch=MEMORY_FREE_HATCHES[method], linewidth=0, zorder=0.5)
                handles[label] = (band, axis.axhline(100 * mean[-1], color=color, linestyle=line, linewidth=1.3,
                                                     zorder=1.5, label=label))
                continue
            x = np.array([100 * key[2] for key in keys])
            handles[label], = axis.plot(x, 100 * mean, color=color, marker=marker, linestyle=line, zorder=3,
                                        label=label)
            axis.fill_between(x, 100 * low, 100 * high, color=handles[label].get_color(), alpha=0.2, linewidth=0,
                              zorder=1)
        percents = sorted({100 * r["memory_fraction"] for r in records if r["task"] == task})
        axis.set_xscale("log")
        axis.set_xticks(percents, [f"{p:g}" for p in percents])
        axis.minorticks_off()
        axis.set_title(KPRIOR_TASK_TITLES.get(task, task.replace("_", " ")))
        axis.set_xlabel("memory size (% of each task's data, log scale)" if task.startswith("continual")
                        else "memory size (% of past data, log scale)")
        axis.grid(alpha=0.3)
    for axis in grid[:, 0]:
        axis.set_ylabel("test accuracy (%)")
    if tasks:
        seeds = f"{num_seeds} seed{'s' * (num_seeds != 1)}"
        handles[f"band: min-max over {seeds}" + (" (hatched: no memory)" if any(
            r["method"] in MEMORY_FREE_HATCHES for r in records) else "")] = Patch(facecolor="tab:gray", alpha=0.3)
        figure.legend(list(handles.values()), list(handles), loc="outside right center", fontsize=8,
                      title=f"lines: mean over {seeds}", title_fontsize=8)
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=120)
    return figure
