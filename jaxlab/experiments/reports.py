"""Plots and tables shared by the experiments (a helper module, not an experiment).

K-prior experiments (kprior_adaptation, kprior_deep): `RECORD_KEYS` (the fields every record of their
results.json has), `summarize(records)` (test accuracy over seeds per task, method and memory fraction) and
`plot_accuracy_vs_memory(records, path)` (one panel per task, accuracy against memory size).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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
    "finetune": ("Fine-tuning", "tab:gray", None, ":"),
    "batch": ("Batch (retraining)", "black", None, "--"),
}


def summarize(records: list[dict]) -> dict:
    """{(task, method, memory_fraction): (mean, std, min, max) of test_accuracy over seeds}."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["task"], r["method"], r["memory_fraction"]), []).append(r["test_accuracy"])
    return {key: (float(np.mean(v)), float(np.std(v)), float(np.min(v)), float(np.max(v)))
            for key, v in groups.items()}


def plot_accuracy_vs_memory(records: list[dict], path: str, title: str = "") -> None:
    """One panel per task: test accuracy against memory size (% of past data, log axis), one line per method
    (mean over seeds, min-max band); tasks and methods in the orders of KPRIOR_TASK_TITLES / KPRIOR_METHOD_STYLES
    (others after them, in record order)."""
    stats = summarize(records)
    present = list(dict.fromkeys(r["task"] for r in records))
    tasks = [t for t in KPRIOR_TASK_TITLES if t in present] + [t for t in present if t not in KPRIOR_TASK_TITLES]
    figure, axes = plt.subplots(1, max(1, len(tasks)), figsize=(4.5 * max(1, len(tasks)), 3.6), squeeze=False)
    methods = list(KPRIOR_METHOD_STYLES) + [m for m in dict.fromkeys(r["method"] for r in records)
                                            if m not in KPRIOR_METHOD_STYLES]
    for axis, task in zip(axes[0], tasks):
        for method in methods:
            label, color, marker, line = KPRIOR_METHOD_STYLES.get(method, (method, None, "^", "-"))
            keys = sorted((key for key in stats if key[:2] == (task, method)), key=lambda key: key[2])
            if not keys:
                continue
            x = np.array([100 * key[2] for key in keys])
            mean, _, low, high = (np.array([stats[key][i] for key in keys]) for i in range(4))
            lines = axis.plot(x, 100 * mean, color=color, marker=marker, linestyle=line, label=label)
            axis.fill_between(x, 100 * low, 100 * high, color=lines[0].get_color(), alpha=0.2)
        axis.set_xscale("log")
        axis.set_title(KPRIOR_TASK_TITLES.get(task, task.replace("_", " ")))
        axis.set_xlabel("memory size (% of past data)")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    if tasks:
        axes[0][0].legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
