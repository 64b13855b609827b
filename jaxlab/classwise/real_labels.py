"""ImageNet ReaL label structure: statistics and co-labelled class pairs, from the label files alone.

ReaL (Beyer et al. 2020, "Are we done with ImageNet?") re-annotated the 50,000 ILSVRC2012 validation
images with SETS of labels. `real.json` is a JSON list of 50,000 lists of class indices (0..999, the
sorted-WordNet-id order of tensorflow-datasets' imagenet2012 `labels.txt`), one per validation image
in file order (ILSVRC2012_val_00000001.JPEG first). The original single labels ship inside
tensorflow-datasets as `imagenet2012/validation_labels.txt` (50,000 WordNet ids, same order), so the
full label structure (original label y_i + ReaL set S_i) is available offline; no images are needed.

Maths (the same as jaxlab.classwise.categories):
    usable_i  = [S_i non-empty]            (the empty-set rule: an empty set means "no valid label";
                                            such images are skipped in every multi-label quantity)
    n_k       = #{i : y_i = k, usable_i}
    P[k, l]   = #{i : y_i = k, usable_i, l in S_i} / n_k     (P(l | k), "co-labelling"; NaN if n_k = 0)
A pair (k, l) is ambiguous when min(P[k, l], P[l, k]) >= symmetric_threshold, co-occurring when only
max(...) >= cooccurrence_threshold, fine-grained when neither but k, l share a group, other otherwise
(`categories.pair_category`). Statistics: images, usable, empty, multi-label (|S_i| > 1), and the
fraction of usable images whose original label is inside the set (#{usable_i, y_i in S_i} / #usable).

Fine-grained pairs need a class hierarchy: for ImageNet's classes it is the WordNet-derived group of each class
shipped beside this module (imagenet_wordnet_groups.csv, made by benchmarks/imagenet_wordnet_groups.py: the
largest WordNet 3.0 subtree holding the class and at most 30 of the 1,000 classes, e.g. terrier, snake, feline);
`imagenet_class_groups` gives it in the form config.classwise.class_groups takes.

Command (prints the statistics and a table of the top pairs; with --out it writes
DIR/real_cooccurrence.csv, every ordered pair with P[k, l] >= --min-p (default 0.01), columns
k,l,name_k,name_l,p_l_given_k,p_k_given_l,n_k,category, and DIR/real_top_pairs.json, the statistics
and the top --count pairs):

    python -m jaxlab.classwise.real_labels --real=$JAXLAB_DATA_DIR/imagenet_real/real.json \\
        [--names=names.txt] [--groups=wordnet|none] [--out=DIR] [--count=50]

Without --names the class names are the WordNet names of the shipped file (first lemma: "sunglass",
"sports car"), the WordNet id for a class not in it. --groups=wordnet uses the shipped WordNet groups for
the fine-grained category (every class must be one of ImageNet's), none uses no hierarchy; by default
wordnet when every class is one of ImageNet-1k's, none otherwise.
--wnids / --labels replace tfds's validation_labels.txt / labels.txt (any class count; the tests use a
4-class fixture).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import sys
from functools import cache
from importlib import resources
from typing import NamedTuple, Sequence

import numpy as np

from jaxlab.classwise import categories
from jaxlab.classwise.metrics import usable_multilabel

NUM_CLASSES = 1000
CSV_COLUMNS = ("k", "l", "name_k", "name_l", "p_l_given_k", "p_k_given_l", "n_k", "category")

# The WordNet-derived group of each ImageNet-1k class, beside this module (benchmarks/imagenet_wordnet_groups.py).
WORDNET_GROUPS_FILE = "imagenet_wordnet_groups.csv"
WORDNET_GROUP_COLUMNS = ("index", "wnid", "name", "group_wnid", "group_name")


class WordNetClass(NamedTuple):
    index: int
    wnid: str
    name: str
    group_wnid: str
    group_name: str


_FORMAT = ("a JSON list with one list of non-negative integer class indices per validation image "
           "(ImageNet ReaL real.json: 50,000 lists, empty lists allowed)")


# ----------------------------------------------------------------------------------------------- loaders
def load_real_json(path) -> list[list[int]]:
    """The ReaL label lists of `path`; ValueError naming the file and the expected format if malformed."""
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); expected {_FORMAT}") from e
    if not isinstance(data, list):
        raise ValueError(f"{path}: top level is {type(data).__name__}; expected {_FORMAT}")
    for i, entry in enumerate(data):
        if not isinstance(entry, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in entry):
            raise ValueError(f"{path}: entry {i} is {entry!r}; expected {_FORMAT}")
    return data


def label_sets_matrix(real: Sequence[Sequence[int]], num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(N, K) bool, row i marks the classes of real[i]; an empty list gives an all-False (unusable) row."""
    sizes = np.fromiter((len(r) for r in real), np.int64, count=len(real))
    rows = np.repeat(np.arange(len(real)), sizes)
    cols = np.fromiter((c for r in real for c in r), np.int64, count=int(sizes.sum()))
    if cols.size and (cols.min() < 0 or cols.max() >= num_classes):
        bad = int(rows[np.argmax((cols < 0) | (cols >= num_classes))])
        raise ValueError(f"label list {bad} is {list(real[bad])}: class indices must lie in [0, {num_classes})")
    sets = np.zeros((len(real), num_classes), bool)
    sets[rows, cols] = True
    return sets


def validation_index(file_name) -> int:
    """ILSVRC2012_val_00000001.JPEG (any folder prefix, bytes or str) -> 0, its position in real.json."""
    name = os.path.basename(file_name.decode() if isinstance(file_name, bytes) else str(file_name))
    match = re.fullmatch(r"ILSVRC2012_val_(\d{8})\.JPEG", name)
    if match is None:
        raise ValueError(f"{file_name!r} is not an ImageNet validation file name (ILSVRC2012_val_NNNNNNNN.JPEG)")
    return int(match.group(1)) - 1


def label_sets_for_file_names(real: Sequence[Sequence[int]], file_names: Sequence, num_classes: int = NUM_CLASSES):
    """The ReaL sets of the given validation files, in their order (an eval split in any order)."""
    sets = label_sets_matrix(real, num_classes)
    return sets[[validation_index(f) for f in file_names]]


def _tfds_imagenet_file(name: str) -> str:
    """A file of tfds's imagenet2012 folder, located from the package without importing it."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or spec.origin is None:
        raise ImportError("tensorflow-datasets is not installed: pass the imagenet2012 label files explicitly "
                          f"(the file wanted was imagenet2012/{name})")
    return os.path.join(os.path.dirname(spec.origin), "datasets", "imagenet2012", name)


def _read_lines(path) -> list[str]:
    with open(path) as f:
        lines = [line.strip() for line in f]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def imagenet_wnids(labels_file=None) -> tuple[str, ...]:
    """The class WordNet ids in class-index order (tfds imagenet2012/labels.txt by default)."""
    path = labels_file or _tfds_imagenet_file("labels.txt")
    wnids = tuple(_read_lines(path))
    if not wnids or len(set(wnids)) != len(wnids) or not all(wnids):
        raise ValueError(f"{path}: expected one distinct WordNet id per line, in class-index order")
    return wnids


def imagenet_validation_labels(wnids_file=None, labels_file=None) -> np.ndarray:
    """The original label (class index) of every validation image, in file order (50,000 by default).

    wnids_file: one WordNet id per image (tfds imagenet2012/validation_labels.txt by default);
    labels_file: the class WordNet ids in class-index order (tfds imagenet2012/labels.txt by default).
    """
    index = {w: k for k, w in enumerate(imagenet_wnids(labels_file))}
    path = wnids_file or _tfds_imagenet_file("validation_labels.txt")
    wnids = _read_lines(path)
    unknown = [(i, w) for i, w in enumerate(wnids) if w not in index]
    if unknown:
        i, w = unknown[0]
        raise ValueError(f"{path}: line {i + 1} holds {w!r}, not a class WordNet id "
                         f"({len(unknown)} unknown in all)")
    return np.array([index[w] for w in wnids], np.int64)


def parse_wordnet_groups(text: str, source: str = WORDNET_GROUPS_FILE) -> tuple[WordNetClass, ...]:
    """The rows of a WordNet groups file (WORDNET_GROUP_COLUMNS, one row per class in index order; lines
    starting with '#' are notes: how the file was made, WordNet's copyright); ValueError naming `source`."""
    reader = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    if tuple(reader.fieldnames or ()) != WORDNET_GROUP_COLUMNS:
        raise ValueError(f"{source}: columns {reader.fieldnames}; expected {WORDNET_GROUP_COLUMNS}")
    classes = tuple(WordNetClass(int(r["index"]), r["wnid"], r["name"], r["group_wnid"], r["group_name"])
                    for r in reader)
    if [c.index for c in classes] != list(range(len(classes))):
        raise ValueError(f"{source}: expected one row per class index 0, 1, 2, ... in order")
    return classes


@cache
def imagenet_wordnet_classes() -> tuple[WordNetClass, ...]:
    """The shipped WordNet group of each of ImageNet-1k's 1,000 classes, in class-index order."""
    classes = parse_wordnet_groups(resources.files(__package__).joinpath(WORDNET_GROUPS_FILE).read_text())
    if len(classes) != NUM_CLASSES:
        raise ValueError(f"{WORDNET_GROUPS_FILE}: {len(classes)} classes; expected {NUM_CLASSES}")
    return classes


def imagenet_class_groups(wnids: Sequence[str] | None = None) -> tuple[int, ...]:
    """Group id of each class of `wnids` (default: ImageNet-1k's 1,000 in class-index order), the form
    config.classwise.class_groups takes: classes k, l share an id iff they share a WordNet group. Ids number
    the groups in order of first appearance in the shipped file; any subset or order of ImageNet's wnids works."""
    classes = imagenet_wordnet_classes()
    group_ids = {}
    for c in classes:
        group_ids.setdefault(c.group_wnid, len(group_ids))
    group_of = {c.wnid: group_ids[c.group_wnid] for c in classes}
    wnids = [c.wnid for c in classes] if wnids is None else list(wnids)
    unknown = [w for w in wnids if w not in group_of]
    if unknown:
        raise ValueError(f"{len(unknown)} of the {len(wnids)} classes are not ImageNet-1k WordNet ids "
                         f"(first: {unknown[0]!r}): no WordNet group for them")
    return tuple(group_of[w] for w in wnids)


def imagenet_class_names(names_file=None, labels_file=None) -> tuple[str, ...]:
    """Class names in class-index order: names_file (one per line, one line per class) if given, else the
    WordNet names of the shipped file for the WordNet ids of labels_file (tfds's labels.txt by default),
    the id itself for a class not in it."""
    wnids = imagenet_wnids(labels_file)
    if names_file is None:
        known = {c.wnid: c.name for c in imagenet_wordnet_classes()}
        return tuple(known.get(w, w) for w in wnids)
    names = tuple(_read_lines(names_file))
    if len(names) != len(wnids):
        raise ValueError(f"{names_file}: {len(names)} names; expected one name per line for each of the "
                         f"{len(wnids)} classes, in class-index order")
    return names


# ----------------------------------------------------------------------------------------------- maths
def real_statistics(labels, label_sets) -> dict:
    """Counts of the ReaL label structure (see the module docstring); JSON-able."""
    labels = np.asarray(labels)
    label_sets = np.asarray(label_sets, bool)
    if labels.shape[0] != label_sets.shape[0]:
        raise ValueError(f"{labels.shape[0]} original labels but {label_sets.shape[0]} label sets")
    usable = usable_multilabel(label_sets)
    sizes = label_sets.sum(axis=1)
    inside = label_sets[np.arange(labels.shape[0]), labels] & usable
    n_usable = int(usable.sum())
    return {
        "images": int(labels.shape[0]),
        "usable": n_usable,
        "empty": int((~usable).sum()),
        "multi_label": int((sizes > 1).sum()),
        "original_in_set": int(inside.sum()),
        "original_in_set_fraction": float(inside.sum() / n_usable) if n_usable else float("nan"),
        "mean_set_size_usable": float(sizes[usable].mean()) if n_usable else float("nan"),
    }


def cooccurrence_report(labels, label_sets, class_names: Sequence[str], *, count: int | None = 50,
                        symmetric_threshold: float = 0.2, cooccurrence_threshold: float = 0.2,
                        groups: Sequence[int] | None = None, min_value: float = 0.0) -> list[dict]:
    """Rows for the `count` (None: all) most co-labelled ordered pairs (k, l), k != l, P[k, l] > 0 and
    >= min_value, largest P[k, l] first: k, l, name_k, name_l, p_l_given_k = P[k, l], p_k_given_l = P[l, k],
    n_k (usable images of k) and category (categories.pair_category with the given thresholds and groups)."""
    num_classes = len(class_names)
    colabel = categories.colabel_matrix(labels, label_sets, num_classes)
    n = np.bincount(np.asarray(labels)[usable_multilabel(label_sets)], minlength=num_classes)
    rows = []
    for k, l, _ in categories.top_pairs(colabel, count=count, min_value=min_value):
        rows.append({
            "k": k, "l": l, "name_k": class_names[k], "name_l": class_names[l],
            "p_l_given_k": float(colabel[k, l]), "p_k_given_l": float(np.nan_to_num(colabel[l, k])),
            "n_k": int(n[k]),
            "category": categories.pair_category(k, l, colabel=colabel, groups=groups,
                                                 symmetric_threshold=symmetric_threshold,
                                                 cooccurrence_threshold=cooccurrence_threshold),
        })
    return rows


# ----------------------------------------------------------------------------------------------- report
def format_table(rows: Sequence[dict]) -> str:
    """The pair rows as a fixed-width text table."""
    width = max([len("name_k"), len("name_l")] + [len(r["name_k"]) for r in rows]
                + [len(r["name_l"]) for r in rows])
    lines = [f"{'k':>4} {'l':>4}  {'name_k':<{width}}  {'name_l':<{width}}  P(l|k)  P(k|l)  n_k  category"]
    for r in rows:
        lines.append(f"{r['k']:>4} {r['l']:>4}  {r['name_k']:<{width}}  {r['name_l']:<{width}}  "
                     f"{r['p_l_given_k']:6.3f}  {r['p_k_given_l']:6.3f}  {r['n_k']:>3}  {r['category']}")
    return "\n".join(lines)


def write_csv(path, rows: Sequence[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: r[c] for c in CSV_COLUMNS})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jaxlab.classwise.real_labels",
                                description="ImageNet ReaL label statistics and co-labelled class pairs.")
    p.add_argument("--real", required=True, help="ReaL real.json (one list of class indices per val image)")
    p.add_argument("--names", default=None, help="class names, one per line in class-index order")
    p.add_argument("--groups", choices=("wordnet", "none"), default=None,
                   help="class hierarchy for the fine-grained category: the shipped WordNet groups, or none "
                        "(default: wordnet when every class is one of ImageNet-1k's, else none)")
    p.add_argument("--out", default=None, help="folder for real_cooccurrence.csv and real_top_pairs.json "
                                               "(nothing is written without it)")
    p.add_argument("--count", type=int, default=50, help="number of top pairs printed and in the JSON")
    p.add_argument("--min-p", type=float, default=0.01, help="smallest P(l|k) written to the CSV")
    p.add_argument("--symmetric-threshold", type=float, default=0.2)
    p.add_argument("--cooccurrence-threshold", type=float, default=0.2)
    p.add_argument("--wnids", default=None, help="original label per image as WordNet ids "
                                                 "(default: tfds imagenet2012/validation_labels.txt)")
    p.add_argument("--labels", default=None, help="class WordNet ids in class-index order "
                                                  "(default: tfds imagenet2012/labels.txt)")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    names = imagenet_class_names(args.names, args.labels)
    labels = imagenet_validation_labels(args.wnids, args.labels)
    real = load_real_json(args.real)
    if len(real) != len(labels):
        raise ValueError(f"{args.real}: {len(real)} label lists but {len(labels)} original labels")
    sets = label_sets_matrix(real, len(names))
    stats = real_statistics(labels, sets)
    wnids = imagenet_wnids(args.labels)
    hierarchy = args.groups or ("wordnet" if set(wnids) <= {c.wnid for c in imagenet_wordnet_classes()} else "none")
    groups = imagenet_class_groups(wnids) if hierarchy == "wordnet" else None
    thresholds = {"symmetric_threshold": args.symmetric_threshold,
                  "cooccurrence_threshold": args.cooccurrence_threshold}
    top = cooccurrence_report(labels, sets, names, count=args.count, groups=groups, **thresholds)

    print(f"ReaL labels: {args.real}")
    for key, value in stats.items():
        print(f"  {key:<26} {value:.4f}" if isinstance(value, float) else f"  {key:<26} {value}")
    described = f"WordNet groups ({len(set(groups))})" if groups else "none"
    print(f"\nTop {len(top)} co-labelled pairs, P(l|k) over usable images of k; class hierarchy: {described}")
    print(format_table(top))

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        every = cooccurrence_report(labels, sets, names, count=None, min_value=args.min_p, groups=groups,
                                    **thresholds)
        write_csv(os.path.join(args.out, "real_cooccurrence.csv"), every)
        with open(os.path.join(args.out, "real_top_pairs.json"), "w") as f:
            json.dump({"real": str(args.real), "statistics": stats, **thresholds, "groups": hierarchy,
                       "pairs": top}, f, indent=1)
        print(f"\nwrote {len(every)} pairs with P >= {args.min_p} to "
              f"{os.path.join(args.out, 'real_cooccurrence.csv')} and real_top_pairs.json")
    return {"statistics": stats, "pairs": top}


if __name__ == "__main__":
    try:
        main()
    except (ValueError, ImportError, OSError) as e:
        sys.exit(f"error: {e}")
