"""ImageNet's WordNet class groups: the shipped file (jaxlab.classwise.real_labels), the script that makes it
(benchmarks/imagenet_wordnet_groups.py, run here on a hand-made WordNet excerpt), and their use by the ReaL
command and the ImageNet config."""

import collections
import importlib.util
import json
from pathlib import Path

import pytest

from jaxlab.classwise import real_labels

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "imagenet_wordnet_groups.py"
spec = importlib.util.spec_from_file_location("imagenet_wordnet_groups", SCRIPT)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

NORFOLK, NORWICH = "n02094114", "n02094258"          # Norfolk / Norwich terrier
GOLDEN, LABRADOR = "n02099601", "n02099712"          # golden / Labrador retriever
TABBY, PERSIAN, TIGER = "n02123045", "n02123394", "n02129604"
THUNDER_SNAKE, GREEN_MAMBA = "n01728572", "n01749939"
AGARIC, BOLETE = "n12985857", "n13054560"
SUNGLASS, SUNGLASSES = "n04355933", "n04356056"
LAPTOP, NOTEBOOK, TENCH = "n03642806", "n03832673", "n01440764"


def _group(*wnids):
    return real_labels.imagenet_class_groups(wnids)


def test_shipped_file_has_every_class_in_sorted_wnid_order():
    classes = real_labels.imagenet_wordnet_classes()
    wnids = [c.wnid for c in classes]
    assert len(classes) == 1000 and wnids == sorted(set(wnids)) and wnids[0] == TENCH
    assert (classes[0].name, classes[836].name, classes[837].name) == ("tench", "sunglass", "sunglasses")
    groups = real_labels.imagenet_class_groups()
    assert len(groups) == 1000 and all(isinstance(g, int) for g in groups)
    assert sorted(set(groups)) == list(range(len(set(groups))))  # dense ids, first appearance order
    assert groups[0] == 0


@pytest.mark.parametrize("first,second", [(NORFOLK, NORWICH), (GOLDEN, LABRADOR), (TABBY, PERSIAN),
                                          (TABBY, TIGER), (THUNDER_SNAKE, GREEN_MAMBA), (AGARIC, BOLETE),
                                          (LAPTOP, NOTEBOOK)])
def test_close_classes_share_a_group(first, second):
    a, b = _group(first, second)
    assert a == b


@pytest.mark.parametrize("first,second", [(TENCH, LAPTOP), (TABBY, NORFOLK), (NORFOLK, GOLDEN),
                                          (THUNDER_SNAKE, AGARIC),
                                          # WordNet's sunglass is a burning glass (a lens), unrelated to
                                          # sunglasses (spectacles): ambiguous by co-labelling, not by WordNet
                                          (SUNGLASS, SUNGLASSES)])
def test_unrelated_classes_do_not(first, second):
    a, b = _group(first, second)
    assert a != b


def test_group_sizes_are_sane():
    classes = real_labels.imagenet_wordnet_classes()
    sizes = collections.Counter(c.group_wnid for c in classes)
    assert max(sizes.values()) <= 30  # the cap the file was made with
    assert 100 <= len(sizes) <= 300
    assert sum(n for n in sizes.values() if n > 1) >= 900  # most classes have a WordNet neighbour
    dog_groups = {c.group_name for c in classes if 151 <= c.index <= 268}  # the 118 dog breeds
    assert {"terrier", "hound", "working dog", "sporting dog", "toy dog"} <= dog_groups
    # a group's wnid names one group: its classes share its name
    assert len({(c.group_wnid, c.group_name) for c in classes}) == len(sizes)


def test_class_groups_follow_the_given_order_and_reject_unknown_wnids():
    groups = real_labels.imagenet_class_groups()
    wnids = [c.wnid for c in real_labels.imagenet_wordnet_classes()]
    picked = [wnids[k] for k in (5, 836, 0)]
    assert _group(*picked) == (groups[5], groups[836], groups[0])
    with pytest.raises(ValueError, match="n00000010"):
        _group(TENCH, "n00000010")


def test_parse_wordnet_groups_rejects_bad_files():
    good = "# a note\nindex,wnid,name,group_wnid,group_name\n0,n1,a,n9,g\n1,n2,b,n9,g\n"
    assert real_labels.parse_wordnet_groups(good)[1] == real_labels.WordNetClass(1, "n2", "b", "n9", "g")
    with pytest.raises(ValueError, match="columns"):
        real_labels.parse_wordnet_groups("index,wnid,name\n0,n1,a\n", "x.csv")
    with pytest.raises(ValueError, match="in order"):
        real_labels.parse_wordnet_groups(good.replace("1,n2", "2,n2"))


def test_imagenet_config_uses_the_groups():
    path = REPO / "configs" / "classwise" / "imagenet_resnet50.py"
    config_spec = importlib.util.spec_from_file_location("imagenet_resnet50", path)
    module = importlib.util.module_from_spec(config_spec)
    config_spec.loader.exec_module(module)
    assert tuple(module.get_config().classwise.class_groups) == real_labels.imagenet_class_groups()


# ------------------------------------------------------------------------------------ the generating script
# A WordNet 3.0 data.noun excerpt (wndb(5) format): entity > animal > dog > terrier > {Norfolk, Norwich};
# dalmatian's FIRST hypernym is dog, its second domestic_animal (> animal); animal > cat > tabby (an instance
# hypernym, @i); entity > artifact > laptop. Non-hypernym pointers (~ hyponym, + verb) must be ignored.
DATA_NOUN = """\
  1 This software and database is being provided to you, the LICENSEE, by  
  2 WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.  
00001740 03 n 01 entity 0 002 ~ 00015388 n 0000 ~ 00021939 n 0000 | that which is perceived  
00015388 03 n 02 animal 0 animate_being 0 003 @ 00001740 n 0000 ~ 02084071 n 0000 + 01234567 v 0101 | an organism  
01317541 05 n 02 domestic_animal 0 domesticated_animal 0 001 @ 00015388 n 0000 | a tame animal  
02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 002 @ 00015388 n 0000 ~ 02092468 n 0000 | a canine  
02092468 05 n 01 terrier 0 001 @ 02084071 n 0000 | a small dog  
02094114 05 n 02 Norfolk_terrier 0 Norfolk 0 001 @ 02092468 n 0000 | English breed  
02094258 05 n 02 Norwich_terrier 0 Norwich 0 001 @ 02092468 n 0000 | English breed  
02110341 05 n 03 dalmatian 0 coach_dog 0 carriage_dog 0 002 @ 02084071 n 0000 @ 01317541 n 0000 | a large breed  
02121620 05 n 01 cat 0 001 @ 00015388 n 0000 | feline mammal  
02123045 05 n 02 tabby 0 tabby_cat 0 001 @i 02121620 n 0000 | a cat with a striped coat  
00021939 03 n 01 artifact 0 001 @ 00001740 n 0000 | a man-made object  
03642806 06 n 02 laptop 0 laptop_computer 0 001 @ 00021939 n 0000 | a portable computer  
"""
WNIDS = ("n02094114", "n02094258", "n02110341", "n02123045", "n03642806")


@pytest.fixture
def wordnet(tmp_path):
    (tmp_path / "data.noun").write_text(DATA_NOUN)
    (tmp_path / "labels.txt").write_text("\n".join(WNIDS) + "\n")
    return tmp_path


def test_read_noun_synsets_keeps_hypernyms_in_order(wordnet):
    synsets = script.read_noun_synsets(wordnet / "data.noun")
    assert len(synsets) == 12
    assert synsets["02110341"] == script.Synset(("dalmatian", "coach_dog", "carriage_dog"), ("02084071", "01317541"))
    assert synsets["02123045"].hypernyms == ("02121620",)  # instance hypernym
    assert synsets["00015388"].hypernyms == ("00001740",)  # hyponym and verb pointers dropped
    assert script.primary_path("02110341", synsets) == ("00001740", "00015388", "02084071", "02110341")


def test_capped_groups_take_the_largest_subtree_under_the_cap():
    paths = [("root", "a", "x1"), ("root", "a", "x2"), ("root", "a", "x3"), ("root", "b", "y1")]
    assert script.capped_groups(paths, 3) == ["a", "a", "a", "b"]
    assert script.capped_groups(paths, 2) == ["x1", "x2", "x3", "b"]
    assert script.capped_groups(paths, 4) == ["root"] * 4
    with pytest.raises(ValueError, match="at least 1"):
        script.capped_groups(paths, 0)


@pytest.mark.parametrize("cap,expected", [
    (2, ["terrier", "terrier", "dalmatian", "cat", "artifact"]),
    (3, ["dog", "dog", "dog", "cat", "artifact"]),   # dalmatian joins by its first hypernym, dog
])
def test_script_writes_a_file_the_loader_reads(wordnet, capsys, cap, expected):
    out = wordnet / "groups.csv"
    rows = script.main([f"--wordnet-dir={wordnet}", f"--labels={wordnet / 'labels.txt'}",
                        f"--max-group-size={cap}", f"--out={out}"])
    classes = real_labels.parse_wordnet_groups(out.read_text())
    assert [c.wnid for c in classes] == list(WNIDS) and [c.index for c in classes] == list(range(5))
    assert [c.group_name for c in classes] == expected
    assert classes[0].name == "Norfolk terrier"
    assert classes[0].group_wnid == {2: "n02092468", 3: "n02084071"}[cap]  # terrier, dog
    assert [r["group_name"] for r in rows] == expected
    text = out.read_text()
    assert f"max_group_size={cap}" in text and "Copyright 2006 by Princeton University" in text
    sizes = collections.Counter(expected)
    assert script.size_distribution(rows) == dict(collections.Counter(sizes.values()))
    assert f"{len(sizes)} groups" in capsys.readouterr().out


def test_script_rejects_wnids_outside_wordnet(wordnet):
    (wordnet / "labels.txt").write_text("n02094114\nn09999999\n")
    with pytest.raises(ValueError, match="n09999999"):
        script.main([f"--wordnet-dir={wordnet}", f"--labels={wordnet / 'labels.txt'}",
                     f"--out={wordnet / 'g.csv'}"])


# ------------------------------------------------------------------------------------ the ReaL command
# Four ImageNet classes: Norfolk and Norwich terrier (one WordNet group), tench, laptop. 4 images each; a
# Norfolk image also labelled Norwich (P = 1/4 < 0.25 threshold used below) and a tench image also labelled
# laptop: with the WordNet groups the first pair is fine-grained, the second other.
CLASSES = (TENCH, NORFOLK, NORWICH, LAPTOP)
LABELS = [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
REAL = [[0, 3], [0], [0], [0], [1, 2], [1], [1], [1], [2], [2], [2], [2], [3], [3], [3], [3]]


@pytest.fixture
def real_files(tmp_path):
    assert list(CLASSES) == sorted(CLASSES)  # so the class indices of REAL are the sorted-wnid indices
    (tmp_path / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    (tmp_path / "validation_labels.txt").write_text("\n".join(CLASSES[y] for y in LABELS) + "\n")
    (tmp_path / "real.json").write_text(json.dumps(REAL))
    return tmp_path


@pytest.mark.parametrize("option,fine,expected", [([], "fine-grained", "wordnet"),
                                                  (["--groups=wordnet"], "fine-grained", "wordnet"),
                                                  (["--groups=none"], "other", "none")])
def test_command_uses_the_wordnet_groups_for_imagenet_classes(real_files, capsys, option, fine, expected):
    folder = real_files
    result = real_labels.main([f"--real={folder / 'real.json'}", f"--wnids={folder / 'validation_labels.txt'}",
                               f"--labels={folder / 'labels.txt'}", f"--out={folder / 'out'}",
                               "--symmetric-threshold=0.3", "--cooccurrence-threshold=0.3", *option])
    by_pair = {(r["name_k"], r["name_l"]): r for r in result["pairs"]}
    assert set(by_pair) == {("Norfolk terrier", "Norwich terrier"), ("tench", "laptop")}
    assert by_pair[("Norfolk terrier", "Norwich terrier")]["category"] == fine
    assert by_pair[("Norfolk terrier", "Norwich terrier")]["p_l_given_k"] == pytest.approx(0.25)
    assert by_pair[("tench", "laptop")]["category"] == "other"
    assert json.loads((folder / "out" / "real_top_pairs.json").read_text())["groups"] == expected
    assert ("WordNet groups (3)" in capsys.readouterr().out) == (expected == "wordnet")


def test_command_wordnet_groups_need_imagenet_classes(real_files):
    folder = real_files
    (folder / "labels.txt").write_text("n00000010\nn01440764\nn02094114\nn02094258\n")
    (folder / "validation_labels.txt").write_text("n00000010\n" * 16)
    (folder / "real.json").write_text(json.dumps([[0]] * 16))
    with pytest.raises(ValueError, match="n00000010"):
        real_labels.main([f"--real={folder / 'real.json'}", f"--wnids={folder / 'validation_labels.txt'}",
                          f"--labels={folder / 'labels.txt'}", "--groups=wordnet"])
    result = real_labels.main([f"--real={folder / 'real.json'}", f"--wnids={folder / 'validation_labels.txt'}",
                               f"--labels={folder / 'labels.txt'}"])  # default: no hierarchy for such classes
    assert result["statistics"]["images"] == 16
