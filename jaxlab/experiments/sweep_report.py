"""The augmentation sweep's report.md (+ PNG plots) in its workdir, readable by someone who did not run the sweep.

Every interval, in the tables and the plots alike, is analysis.json's / intervention.json's: the 95% Student-t
interval over seeds clipped to the quantity's range (jaxlab.classwise.metrics.mean_and_interval). Each plot is
built by a function returning its matplotlib Figure (testable without saving); `treatment_rows` is the one list
of classes the intervention's table and plot show, each with why it was (not) treated.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy import stats

TOP = 6  # classes / pairs shown in the plots and tables
CONFIDENCE = 0.95  # of the intervals (jaxlab.classwise.metrics.mean_and_interval's default)
TREATED_COLOR, UNTREATED_COLOR, AVERAGE_COLOR, REFERENCE_COLOR = "tab:blue", "tab:orange", "0.45", "tab:red"


def _fmt(x, digits=3) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _interval(lower, upper, digits=3, signed=False) -> str:
    """[lower, upper], or – without an interval (one seed)."""
    if lower is None or np.isnan(lower):
        return "–"
    spec = f"+.{digits}f" if signed else f".{digits}f"
    return f"[{lower:{spec}}, {upper:{spec}}]"


def _shown_classes(analysis: dict) -> list[dict]:
    """The affected classes, or the largest drops when none passed the test."""
    ranked = sorted(analysis["classes"], key=lambda r: -r["drop"])
    affected = [r for r in ranked if r["affected"]]
    return (affected or [r for r in ranked if r["drop"] > 0])[:TOP]


def _figure(*grid, figsize) -> tuple[Figure, object]:
    """(figure, axes) without pyplot: no global backend state, safe in notebooks and threads."""
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(*grid)


def _strength_axis(ax, strengths) -> None:
    """Log-scaled RRC lower bound, ticked at the sweep's strengths, strong crops (small s) on the left."""
    ax.set_xscale("log")
    ax.set_xticks(strengths, [f"{v:g}" for v in strengths])
    ax.minorticks_off()
    ax.set_xlim(min(strengths) / 1.25, max(strengths) * 1.25)
    ax.set_xlabel("RRC scale lower bound s (small s = strong crops)")


def _mark_reference(ax, strength: float) -> None:
    """s* as a shaded band (visible behind error bars at the same s) labelled at the top of the axes."""
    ax.axvspan(strength / 1.1, strength * 1.1, color=REFERENCE_COLOR, alpha=0.15, zorder=0, lw=0,
               label=f"s* = {strength:g} (classes scored here)")
    ax.text(strength, 1.0, f"s* = {strength:g}", transform=ax.get_xaxis_transform(), ha="center", va="bottom",
            color=REFERENCE_COLOR, fontsize=8)


def _accuracy_limits(ax) -> None:
    """Accuracies and their clipped intervals lie in [0, 1]: never show the axis past them."""
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -0.01), min(high, 1.01))


def _errorbar(ax, x, summary: dict, column=None, **style) -> None:
    """Seed means with their (asymmetric, clipped) intervals; no bar where there is no interval (one seed)."""
    pick = (lambda v: np.asarray(v, float)) if column is None else (lambda v: np.asarray(v, float)[:, column])
    mean, lower, upper = pick(summary["mean"]), pick(summary["lower"]), pick(summary["upper"])
    ax.errorbar(x, mean, yerr=np.nan_to_num([mean - lower, upper - mean]), marker="o", capsize=3, **style)


def average_accuracy_figure(analysis: dict) -> Figure:
    """Average accuracy (and multi-label accuracy) against s with intervals, s* and the best average marked."""
    s = np.asarray(analysis["strengths"])
    fig, ax = _figure(figsize=(5.5, 3.8))
    _mark_reference(ax, analysis["reference_strength"])
    for key, label in (("average_accuracy", "top-1"), ("multilabel_average_accuracy", "multi-label")):
        if key in analysis:
            _errorbar(ax, s, analysis[key], label=f"{label} (seed mean, {CONFIDENCE:.0%} interval)")
    best = analysis["strengths"].index(analysis["best_average_strength"])
    ax.plot(s[best], analysis["average_accuracy"]["mean"][best], marker="*", markersize=14, color="gold",
            markeredgecolor="black", linestyle="none", label=f"best average: s = {s[best]:g}", zorder=5)
    _strength_axis(ax, s)
    ax.set_ylabel("accuracy (all eval images)")
    ax.set_title("average accuracy vs crop strength", pad=14)  # room for the s* label above the axes
    _accuracy_limits(ax)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def class_accuracy_figure(analysis: dict, shown: list[dict]) -> Figure:
    """The shown classes' accuracy against s with intervals (slightly offset along s so they do not hide each
    other), the average over all classes dashed, s* shaded."""
    s = np.asarray(analysis["strengths"])
    fig, ax = _figure(figsize=(6, 4))
    _mark_reference(ax, analysis["reference_strength"])
    offsets = np.exp(np.linspace(-0.04, 0.04, len(shown))) if len(shown) > 1 else [1.0]
    for r, offset in zip(shown, offsets):
        _errorbar(ax, s * offset, analysis["per_class_accuracy"], column=r["class"],
                  label=f"class {r['name']}{' *' if r['affected'] else ''}")
    ax.plot(s, analysis["average_accuracy"]["mean"], color="black", linestyle="--", label="average (all classes)")
    _strength_axis(ax, s)
    ax.set_ylabel("class accuracy (seed mean)")
    ax.set_title("classes that lose accuracy at s*\n(* = significantly worse than at their own best s)", pad=14)
    _accuracy_limits(ax)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def confusions_figure(analysis: dict, shown: list[dict]) -> Figure:
    """Left: rate at which each shown class is predicted as its partner; right: each partner's false positives
    (a count, drawn once per partner however many classes send it errors)."""
    s = np.asarray(analysis["strengths"])
    names = analysis["class_names"]
    fig, (left, right) = _figure(1, 2, figsize=(10, 3.8))
    for r in shown:
        left.plot(s, r["curves"]["confusion_rate"], marker="o", label=f"{r['name']} predicted as {r['partner_name']}")
    sources: dict[int, list[str]] = {}
    for r in shown:
        sources.setdefault(r["partner"], []).append(r["name"])
    false_positives = np.asarray(analysis["false_positives"]["mean"], float)  # (S, K)
    for partner, senders in sources.items():
        right.plot(s, false_positives[:, partner], marker="s",
                   label=f"{names[partner]} (partner of {', '.join(senders)})")
    left.set(ylabel="rate: P(pred = partner | true class)", title="how often a class is predicted as its partner")
    right.set(ylabel="false positives (eval images, seed mean)", title="the partner's false positives (count)")
    for ax in (left, right):
        _strength_axis(ax, s)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _candidate_text(c: dict, names, comparison: dict) -> str:
    """Why a candidate pair is a candidate: its absorber's false-positive growth, or its source's drop."""
    if "growth" not in c:
        return f"{names[c['source']]} affected, drop {c['drop']:.3f}, p = {c['p_value']:.2g}"
    before, after = c["false_positives"]
    return (f"{names[c['absorber']]}'s false positives {before:.1f} → {after:.1f} from s = "
            f"{comparison['weakest_strength']:g} to s* = {comparison['baseline_strength']:g}, +{c['growth']:.1f}")


def _why_treated(c: dict, names, comparison: dict) -> list[tuple[int, str]]:
    """(class, reason) for both classes of a treated candidate pair."""
    k, l, rank = c["source"], c["absorber"], c["rank"]
    if "growth" in c:
        return [(l, f"candidate {rank}, absorber: {_candidate_text(c, names, comparison)}"),
                (k, f"candidate {rank}, source: the class whose errors {names[l]} absorbs most at s* "
                    f"({c['errors_absorbed']:.1f} of {names[l]}'s {c['false_positives'][1]:.1f} false positives)")]
    return [(k, f"candidate {rank}, source: {_candidate_text(c, names, comparison)}"),
            (l, f"candidate {rank}, partner: where most of {names[k]}'s errors go at s* "
                f"({c['errors_absorbed']:.1f} images)")]


def _why_untreated(k: int, analysis: dict, comparison: dict) -> str:
    """Why affected class k is in no treated pair: its candidate pair's status, or why it is in none."""
    names, candidates = analysis["class_names"], comparison["candidates"]
    treated = [c for c in candidates if c["status"] == "treated"]
    record = next(r for r in analysis["classes"] if r["class"] == k)
    partner, reference = record["partner"], analysis["reference_index"]
    mine = next((c for c in candidates if k in (c["source"], c["absorber"])), None)
    if mine is None:
        absorbing = next((c for c in candidates if c["absorber"] == partner), None)
        if absorbing is None:
            false_positives = analysis["false_positives"]["mean"]
            before = false_positives[analysis["strengths"].index(comparison["weakest_strength"])][partner]
            return (f"its errors go mostly to {names[partner]}, whose false positives did not grow ({before:.1f} at "
                    f"s = {comparison['weakest_strength']:g}, {false_positives[reference][partner]:.1f} at s* = "
                    f"{comparison['baseline_strength']:g}): in no candidate pair")
        sent = record["curves"]["confusion_rate"][reference] * analysis["n"][k]
        return (f"its errors go mostly to {names[partner]}, whose false-positive growth is paired with "
                f"{names[absorbing['source']]}, the class whose errors {names[partner]} absorbs most at s* "
                f"({absorbing['errors_absorbed']:.1f} vs {sent:.1f} from {names[k]}; that pair: {absorbing['status']})")
    other = mine["absorber"] if mine["source"] == k else mine["source"]
    pairs = comparison["num_pairs"]
    if mine["status"] == "overlap":
        reason = (f"its pair with {names[other]} (candidate {mine['rank']}: {_candidate_text(mine, names, comparison)})"
                  " shares a class with a treated pair; treated pairs share no class")
    else:
        reason = (f"its pair with {names[other]} is candidate {mine['rank']} "
                  f"({_candidate_text(mine, names, comparison)}); config.classwise.intervention_pairs = {pairs}: only "
                  "the first " + (f"{pairs} pairs are" if pairs > 1 else "pair is") + " treated")
    if partner != other:
        with_partner = [c["source"] if c["absorber"] == partner else c["absorber"] for c in treated
                        if partner in (c["source"], c["absorber"])]
        reason += f". Most of its errors at s* go to {names[partner]}, " + (
            f"treated with {', '.join(names[j] for j in with_partner)}" if with_partner else "not treated")
    return reason


def treatment_rows(analysis: dict, comparison: dict) -> list[dict]:
    """The classes the intervention is about: the treated ones (in pair order), then the affected classes left
    untreated (largest drop first, at most TOP), each {"class", "name", "is_treated", "reason"} plus its
    comparison["per_class"] entry (accuracy before / after, change and interval) when the retraining ran."""
    names = analysis["class_names"]
    per_class = {int(k): v for k, v in comparison.get("per_class", {}).items()}
    reasons = [(k, True, reason) for c in comparison["candidates"] if c["status"] == "treated"
               for k, reason in _why_treated(c, names, comparison)]
    treated = {k for k, _, _ in reasons}
    reasons += [(k, False, _why_untreated(k, analysis, comparison))
                for k in [k for k in analysis["affected"] if k not in treated][:TOP]]
    return [{"class": k, "name": names[k], "is_treated": is_treated, "reason": reason, **per_class.get(k, {})}
            for k, is_treated, reason in reasons]


def intervention_figure(rows: list[dict], average: dict, baseline_strength: float) -> Figure:
    """Per-class accuracy change (class-conditional − s* for every class) with intervals over seeds: treated
    classes and untreated affected classes in two styles, the average over all classes last, a zero line."""
    bars = [*rows, {"name": "average (all classes)", "is_treated": None, **average}]
    x = np.arange(len(bars))
    change = np.array([b["change"] for b in bars])
    lower, upper = np.array([b["change_lower"] for b in bars]), np.array([b["change_upper"] for b in bars])
    colors = [AVERAGE_COLOR if b["is_treated"] is None else TREATED_COLOR if b["is_treated"] else UNTREATED_COLOR
              for b in bars]
    hatches = ["//" if b["is_treated"] is False else "" for b in bars]
    fig, ax = _figure(figsize=(max(5.0, 0.8 * len(bars) + 2.5), 4))
    ax.bar(x, change, 0.6, color=colors, hatch=hatches, edgecolor="black", linewidth=0.5,
           yerr=np.nan_to_num([change - lower, upper - change]), capsize=4, error_kw={"elinewidth": 1})
    ax.axhline(0.0, color="black", linewidth=1)
    ax.set_xticks(x, [b["name"] for b in bars], rotation=30, ha="right")
    ax.set(ylabel="accuracy change (after − before)",
           title=f"class-conditional crops vs s* = {baseline_strength:g} for every class\n"
                 f"(seed mean, {CONFIDENCE:.0%} interval over seeds)")
    ax.legend(handles=[Patch(facecolor=TREATED_COLOR, edgecolor="black", label="treated (weaker crops)"),
                       Patch(facecolor=UNTREATED_COLOR, edgecolor="black", hatch="//",
                             label="affected, not treated"),
                       Patch(facecolor=AVERAGE_COLOR, edgecolor="black", label="all classes")], fontsize=7)
    fig.tight_layout()
    return fig


def _save(fig: Figure, workdir: str, name: str) -> None:
    fig.savefig(os.path.join(workdir, name), dpi=110)


def _reference_sentence(analysis: dict) -> str:
    """What s* is in this run and why, against the best strength on average."""
    s, avg = analysis["strengths"], analysis["average_accuracy"]["mean"]
    reference, best = analysis["reference_strength"], analysis["best_average_strength"]
    weakest_is_best = best == max(s)
    if reference == best:
        text = f"Classes are scored at s* = {reference:g}, the strength with the best average accuracy"
        return text + (": crops never raise average accuracy in this sweep, so no class can pay for an average gain."
                       if weakest_is_best else
                       " (the paper's setting: augmentation raises average accuracy; which classes pay for it?).")
    text = (f"Classes are scored at s* = {reference:g}, set by config.classwise.reference_strength; the best "
            f"average accuracy is at s = {best:g} ({avg[s.index(best)]:.3f} against {avg[s.index(reference)]:.3f} "
            "at s*).")
    if weakest_is_best:
        text += (" Here crops never raise average accuracy, so this is not the paper's trade-off (average up, some "
                 "classes down): the tables show which classes strong crops cost most against their own best "
                 "strength, and where their errors go.")
    return text


def write_report(workdir: str, analysis: dict, comparison: dict | None = None) -> str:
    """Write <workdir>/report.md with its plots; returns the report's path."""
    names = analysis["class_names"]
    s = analysis["strengths"]
    seeds = analysis["num_seeds"]
    avg = analysis["average_accuracy"]
    multilabel = "multilabel_average_accuracy" in analysis
    t = stats.t.ppf((1 + CONFIDENCE) / 2, seeds - 1) if seeds > 1 else float("nan")
    _save(average_accuracy_figure(analysis), workdir, "average_accuracy.png")
    lines = ["# Class-level effects of augmentation strength", "",
             f"{len(s)} strengths (RRC scale lower bound s; small = strong crops) x {seeds} seeds, "
             f"{len(names)} classes, {sum(analysis['n'])} eval examples. Accuracies are seed means with their "
             f"{CONFIDENCE:.0%} Student-t interval over seeds in brackets (t = {t:.3g} for {seeds} seeds), clipped to "
             "[0, 1]; the plots draw the same intervals. \"Affected\" is a separate one-sided test of each class's "
             "drop whose noise is floored by binomial sampling noise (README), so a class can be significantly "
             "affected while its intervals overlap.", "",
             "## Average accuracy and the class-level trade-off", "",
             "| s | top-1 | worst class | affected classes (mean) |" + (" multi-label |" if multilabel else ""),
             "|---|---|---|---|" + ("---|" if multilabel else "")]
    trade = analysis["tradeoff"]
    for i, strength in enumerate(s):
        selected = trade["selected_classes"][i] if trade["selected_classes"] else None
        row = (f"| {strength:g} | {_fmt(avg['mean'][i])} {_interval(avg['lower'][i], avg['upper'][i])} | "
               f"{_fmt(trade['worst_class'][i])} | {_fmt(selected)} |")
        if multilabel:
            ml = analysis["multilabel_average_accuracy"]
            row += f" {_fmt(ml['mean'][i])} {_interval(ml['lower'][i], ml['upper'][i])} |"
        lines.append(row)
    best = analysis["reference_index"]
    affected = analysis["affected"]
    lines += ["", _reference_sentence(analysis), "", "![average accuracy](average_accuracy.png)", "",
              "## Affected classes", "",
              (f"{len(affected)} class(es) are significantly worse at s* than at their own best strength: "
               + ", ".join(names[k] for k in affected) + "." if affected else
               "No class is significantly worse at s* than at its own best strength; the classes that lose "
               "anything at s* are listed (none if the table is empty)."),
              "", "| class | best s | acc at best | acc at s* | drop | p | partner | P(partner) at s* | category |"
              " explained by multi-label |", "|---|---|---|---|---|---|---|---|---|---|"]
    per_class = analysis["per_class_accuracy"]
    shown = _shown_classes(analysis)
    for r in shown:
        k = r["class"]
        lines.append(f"| {r['name']}{' *' if r['affected'] else ''} | {r['best_strength']:g} | "
                     f"{_fmt(per_class['mean'][r['best_index']][k])} | {_fmt(per_class['mean'][best][k])} "
                     f"{_interval(per_class['lower'][best][k], per_class['upper'][best][k])} | {_fmt(r['drop'])} | "
                     f"{r['p_value']:.2g} | {r['partner_name']} | {_fmt(r['curves']['confusion_rate'][best])} | "
                     f"{r['category']} | {_fmt(r.get('explained_by_multilabel'), 2)} |")
    if shown:
        _save(class_accuracy_figure(analysis, shown), workdir, "class_accuracy.png")
        _save(confusions_figure(analysis, shown), workdir, "confusions.png")
        lines += ["", "![per-class accuracy](class_accuracy.png)", "", "## Where the errors go", "",
                  "For each class above, its most-confused partner at s*: the rate at which the class is predicted "
                  "as the partner (left), and the partner's false positives, a count of eval images (right), as the "
                  "crops get stronger.", "", "![confusions](confusions.png)"]
    lines.append("")
    if comparison is not None:
        lines += ["## Class-conditional intervention", "", *_intervention_lines(workdir, analysis, comparison)]
    lines += ["", "Files: analysis.json (everything above), per_class.csv (every run, class), predictions/ (raw "
              "predictions of every run), intervention.json (the candidate pairs and the per-class changes)."]
    path = os.path.join(workdir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _intervention_lines(workdir: str, analysis: dict, comparison: dict) -> list[str]:
    """The intervention section: who was treated and why, who was not and why, the changes (and the plot)."""
    names = analysis["class_names"]
    rule = ("the classes whose false positives grow from the weakest strength "
            f"s = {comparison['weakest_strength']:g} to s*, largest growth first, each with the class whose errors "
            "it absorbs most at s*" if comparison["selection"] == "false_positive_growth" else
            "the affected classes, largest drop first, each with its confusion partner")
    lines = [f"Candidate pairs (config.classwise.intervention_selection = {comparison['selection']}): {rule}. Up "
             f"to config.classwise.intervention_pairs = {comparison['num_pairs']} of them are treated, in this order "
             "and skipping a pair that shares a class with one already treated; both classes of a treated pair get "
             f"weaker crops: s = {comparison['treated_strength']:g}, "
             f"every other class s* = {comparison['baseline_strength']:g}; the same seeds as the sweep are retrained "
             "and compared run by run.", ""]
    rows = treatment_rows(analysis, comparison)
    if not comparison["treated"]:
        return lines + ["No candidate pair: nothing was treated.", "",
                        *(f"- {row['name']} (affected): {row['reason']}" for row in rows)]
    pairs = "; ".join(f"{names[k]} and {names[l]}" for k, l in comparison["pairs"])
    untreated = [row["name"] for row in rows if not row["is_treated"]]
    lines += [f"Treated: {pairs}. " + (f"Affected but not treated: {', '.join(untreated)}." if untreated else
                                       "Every affected class was treated."), "",
              "| class | treated | why | accuracy at s* | class-conditional | change [interval] | "
              "false positives (before → after) |", "|---|---|---|---|---|---|---|"]
    lines += [_change_row(row, f"{'yes' if row['is_treated'] else 'no'} | {row['reason']}") for row in rows]
    listed = {row["class"] for row in rows}
    per_class = {int(k): v for k, v in comparison["per_class"].items()}
    others = sorted((k for k in per_class if k not in listed), key=lambda k: per_class[k]["change"])[:TOP]
    if others:
        lines += ["", "The other classes (untreated, not affected) that changed most, largest losses first:", "",
                  "| class | accuracy at s* | class-conditional | change [interval] | "
                  "false positives (before → after) |",
                  "|---|---|---|---|---|"]
        lines += [_change_row({"name": names[k], **per_class[k]}) for k in others]
    average = comparison["average"]
    _save(intervention_figure(rows, average, comparison["baseline_strength"]), workdir, "intervention.png")
    return lines + ["", f"Average accuracy over all classes: {_fmt(average['baseline'])} → "
                    f"{_fmt(average['treated'])} "
                    f"({average['change']:+.4f} "
                    f"{_interval(average['change_lower'], average['change_upper'], 4, signed=True)}).",
                    "", "![intervention](intervention.png)"]


def _change_row(row: dict, middle: str = "") -> str:
    """| name | [middle |] before | after | change [interval] | false positives before → after |"""
    return (f"| {row['name']} | {middle + ' | ' if middle else ''}{_fmt(row['baseline'])} | {_fmt(row['treated'])} | "
            f"{row['change']:+.3f} {_interval(row['change_lower'], row['change_upper'], signed=True)} | "
            f"{row['false_positives_baseline']:.1f} → {row['false_positives_treated']:.1f} |")
