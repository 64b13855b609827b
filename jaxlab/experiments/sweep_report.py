"""The augmentation sweep's report.md (+ PNG plots) in its workdir, readable by someone who did not run the sweep."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

TOP = 6  # classes / pairs shown in the plots


def _fmt(x, digits=3) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _shown_classes(analysis: dict) -> list[dict]:
    """The affected classes, or the largest drops when none passed the test."""
    ranked = sorted(analysis["classes"], key=lambda r: -r["drop"])
    affected = [r for r in ranked if r["affected"]]
    return (affected or [r for r in ranked if r["drop"] > 0])[:TOP]


def _subplots(*grid, figsize):
    """(figure, axes) without pyplot: no global backend state, safe in notebooks and threads."""
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(*grid)


def _plots(workdir: str, analysis: dict, comparison: dict | None) -> dict[str, str]:
    s = np.asarray(analysis["strengths"])
    files = {}

    def strength_axis(ax):
        ax.set_xscale("log")
        ax.set_xticks(s, [f"{v:g}" for v in s])
        ax.minorticks_off()

    def save(fig, name):
        for ax in fig.axes:
            if ax.get_xscale() == "log":
                strength_axis(ax)
        fig.tight_layout()
        fig.savefig(os.path.join(workdir, name), dpi=110)
        files[name] = name

    fig, ax = _subplots(figsize=(5, 3.5))
    for key, label in (("average_accuracy", "top-1"), ("multilabel_average_accuracy", "multi-label")):
        if key in analysis:
            ax.errorbar(s, analysis[key]["mean"], yerr=np.nan_to_num(analysis[key]["ci"]), marker="o", label=label,
                        capsize=3)
    ax.set(xscale="log", xlabel="RRC scale lower bound s (small = strong)", ylabel="accuracy",
           title="average accuracy vs augmentation strength")
    ax.legend()
    save(fig, "average_accuracy.png")

    shown = _shown_classes(analysis)
    if shown:  # classes that lose accuracy at s*
        per_class = np.asarray(analysis["per_class_accuracy"]["mean"])
        per_class_ci = np.nan_to_num(np.asarray(analysis["per_class_accuracy"]["ci"]))
        fig, ax = _subplots(figsize=(5.5, 3.8))
        for r in shown:
            ax.errorbar(s, per_class[:, r["class"]], yerr=per_class_ci[:, r["class"]], marker="o", capsize=3,
                        label=f"{r['name']}{' *' if r['affected'] else ''}")
        ax.axvline(analysis["reference_strength"], color="grey", linestyle=":", label="reference s*")
        ax.set(xscale="log", xlabel="RRC scale lower bound s", ylabel="class accuracy",
               title="per-class accuracy (* = significantly affected)")
        ax.legend(fontsize=7)
        save(fig, "class_accuracy.png")

        fig, (left, right) = _subplots(1, 2, figsize=(9, 3.5))
        for r in shown:
            label = f"{r['name']} → {r['partner_name']}"
            left.plot(s, r["curves"]["confusion_rate"], marker="o", label=label)
            right.plot(s, r["curves"]["partner_false_positives"], marker="o", label=f"FP of {r['partner_name']}")
        left.set(xscale="log", xlabel="s", ylabel="P(pred = partner | class)", title="confusion with the partner")
        right.set(xscale="log", xlabel="s", ylabel="false positives", title="partner's false positives")
        left.legend(fontsize=7)
        right.legend(fontsize=7)
        save(fig, "confusions.png")

    if comparison and comparison.get("treated"):
        names = analysis["class_names"]
        classes = comparison["treated"]
        rows = [comparison["per_class"][k] for k in classes]
        x = np.arange(len(classes))
        fig, ax = _subplots(figsize=(max(4, 0.9 * len(classes) + 2), 3.5))
        ax.bar(x - 0.2, [r["baseline"] for r in rows], 0.4, label=f"s* = {comparison['baseline_strength']:g} for all")
        ax.bar(x + 0.2, [r["treated"] for r in rows], 0.4, label="class-conditional")
        ax.set_xticks(x, [names[k] for k in classes], rotation=30, ha="right")
        ax.set(ylabel="class accuracy", title="intervention: treated classes")
        ax.legend(fontsize=7)
        save(fig, "intervention.png")
    return files


def write_report(workdir: str, analysis: dict, comparison: dict | None = None) -> str:
    """Write <workdir>/report.md with its plots; returns the report's path."""
    comparison = None if comparison is None else {
        **comparison, "per_class": {int(k): v for k, v in comparison.get("per_class", {}).items()}}
    files = _plots(workdir, analysis, comparison)
    names = analysis["class_names"]
    s = analysis["strengths"]
    avg = analysis["average_accuracy"]
    lines = ["# Class-level effects of augmentation strength", "",
             f"{len(s)} strengths (RRC scale lower bound s; small = strong crops) x {analysis['num_seeds']} seeds, "
             f"{len(names)} classes, {sum(analysis['n'])} eval examples. Accuracies are seed means "
             "± 95% Student-t half-widths.", "",
             "## Average accuracy and the class-level trade-off", "",
             "| s | top-1 | worst class | affected classes (mean) |" + (" multi-label |" if
                                                                       "multilabel_average_accuracy" in analysis else ""),
             "|---|---|---|---|" + ("---|" if "multilabel_average_accuracy" in analysis else "")]
    trade = analysis["tradeoff"]
    for i, strength in enumerate(s):
        selected = trade["selected_classes"][i] if trade["selected_classes"] else None
        row = (f"| {strength:g} | {_fmt(avg['mean'][i])} ± {_fmt(avg['ci'][i])} | {_fmt(trade['worst_class'][i])} | "
               f"{_fmt(selected)} |")
        if "multilabel_average_accuracy" in analysis:
            ml = analysis["multilabel_average_accuracy"]
            row += f" {_fmt(ml['mean'][i])} ± {_fmt(ml['ci'][i])} |"
        lines.append(row)
    best = analysis["reference_index"]
    affected = analysis["affected"]
    lines += ["", f"Best average accuracy at s = {analysis['best_average_strength']:g}; classes are scored at the "
              f"reference s* = {s[best]:g}" + (" (the best average)." if analysis['best_average_strength'] == s[best]
                                               else " (config.classwise.reference_strength)."), "", "![average accuracy](average_accuracy.png)", "",
              "## Affected classes", "",
              (f"{len(affected)} class(es) are significantly worse at s* than at their own best strength: "
               + ", ".join(names[k] for k in affected) + "." if affected else
               "No class is significantly worse at s* than at its own best strength; the classes that lose "
               "anything at s* are listed (none if the table is empty)."),
              "", "| class | best s | acc at best | acc at s* | drop | p | partner | P(partner) at s* | category |"
              " explained by multi-label |", "|---|---|---|---|---|---|---|---|---|---|"]
    per_class = np.asarray(analysis["per_class_accuracy"]["mean"])
    for r in _shown_classes(analysis):
        k = r["class"]
        lines.append(f"| {r['name']}{' *' if r['affected'] else ''} | {r['best_strength']:g} | "
                     f"{_fmt(per_class[r['best_index'], k])} | {_fmt(per_class[best, k])} | {_fmt(r['drop'])} | "
                     f"{r['p_value']:.2g} | {r['partner_name']} | {_fmt(r['curves']['confusion_rate'][best])} | "
                     f"{r['category']} | {_fmt(r.get('explained_by_multilabel'), 2)} |")
    if "class_accuracy.png" in files:
        lines += ["", "![per-class accuracy](class_accuracy.png)", "", "## Where the errors go", "",
                  "For each class above, its most-confused partner at s*: how often the class is predicted as the "
                  "partner, and the partner's false positives, as the crops get stronger.", "",
                  "![confusions](confusions.png)"]
    lines.append("")
    if comparison is not None:
        lines += ["## Class-conditional intervention", ""]
        if not comparison.get("treated"):
            lines.append("No pair was selected for treatment.")
        else:
            pairs = ", ".join(f"{names[k]} / {names[l]}" for k, l in comparison["pairs"])
            avg_change = comparison["average"]
            lines += [f"Treated pairs: {pairs}: their crops use s = {comparison['treated_strength']:g}, every other "
                      f"class s* = {comparison['baseline_strength']:g}; same seeds as the sweep, compared run by run.",
                      "", "| class | accuracy at s* | class-conditional | change | false positives (before → after) |",
                      "|---|---|---|---|---|"]
            for k in comparison["treated"]:
                c = comparison["per_class"][k]
                lines.append(f"| {names[k]} | {_fmt(c['baseline'])} | {_fmt(c['treated'])} | "
                             f"{c['change']:+.3f} ± {_fmt(c['change_ci'])} | "
                             f"{c['false_positives_baseline']:.1f} → {c['false_positives_treated']:.1f} |")
            others = sorted((k for k in comparison["per_class"] if k not in comparison["treated"]),
                            key=lambda k: comparison["per_class"][k]["change"])[:TOP]
            if others:
                lines += ["", "The untreated classes that changed most (largest losses first):", "",
                          "| class | accuracy at s* | class-conditional | change | false positives (before → after) |",
                          "|---|---|---|---|---|"]
                for k in others:
                    c = comparison["per_class"][k]
                    lines.append(f"| {names[k]} | {_fmt(c['baseline'])} | {_fmt(c['treated'])} | "
                                 f"{c['change']:+.3f} ± {_fmt(c['change_ci'])} | "
                                 f"{c['false_positives_baseline']:.1f} → {c['false_positives_treated']:.1f} |")
            lines += ["", f"Average accuracy: {_fmt(avg_change['baseline'])} → {_fmt(avg_change['treated'])} "
                      f"({avg_change['change']:+.4f} ± {_fmt(avg_change['change_ci'], 4)}).",
                      "", "![intervention](intervention.png)"]
    lines += ["", "Files: analysis.json (everything above), per_class.csv (every run, class), predictions/ (raw "
              "predictions of every run), intervention.json."]
    path = os.path.join(workdir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
