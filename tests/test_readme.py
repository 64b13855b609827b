"""The README's notebook recipes run as written, so they never go stale; its set-up commands are CI's."""

import pathlib
import re
import warnings

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
RECIPES = ("train", "kprior", "dreg", "classwise")


def _snippets() -> dict[str, str]:
    found = dict(re.findall(r"<!-- notebook-snippet: (\w+) -->\s*```python\n(.*?)```", README.read_text(), re.S))
    assert set(found) == set(RECIPES), f"README's notebook recipes are {sorted(found)}, expected {sorted(RECIPES)}"
    return found


def _run(name: str, tmp_path) -> dict:
    """Execute one recipe with its /tmp workdir moved under tmp_path; its namespace afterwards."""
    code = re.sub(r'"/tmp/(jaxlab_\w+)"', lambda m: repr(str(tmp_path / m.group(1))), _snippets()[name])
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # e.g. a K-prior solve that max_steps cut short
        exec(compile(code, f"README.md:{name}", "exec"), namespace)
    return namespace


def test_train_recipe(tmp_path, capsys):
    namespace = _run("train", tmp_path)
    result = namespace["result"]
    assert len(result["per_class_accuracy"]) == 10
    assert result["accuracy"] > 0.9, "5 epochs on digits reach about 98%"
    assert 0 <= namespace["worst"] < 10
    assert "class 9:" in capsys.readouterr().out


def test_kprior_recipe_adapts_like_retraining(tmp_path):
    """The paper's add-data claim on the recipe's problem: with 10% memory the K-prior lands near retraining and
    above Replay on the same memory (measured 0.969 / 0.984 / 0.841; the old model cannot predict 9: 0.890)."""
    accuracy = _run("kprior", tmp_path)["accuracy"]
    assert accuracy["old model"] < 0.9
    assert accuracy["K-prior"] > accuracy["retrained"] - 0.03
    assert accuracy["K-prior"] > accuracy["Replay"] + 0.05


def test_dreg_recipe_trains_the_copies_and_folds_back(tmp_path, capsys):
    summary = _run("dreg", tmp_path)["summary"]
    assert summary["accuracy"] > 0.9
    assert summary["dreg"]["enabled"] and -1.0 <= summary["dreg"]["dreg_cosine"] <= 1.0
    assert (tmp_path / "jaxlab_dreg" / summary["dreg"]["plain_params"]).is_file()
    assert "copies' cosine" in capsys.readouterr().out


def test_classwise_recipe_finds_the_planted_pair(capsys, tmp_path):
    analysis = _run("classwise", tmp_path)["analysis"]
    assert analysis["affected"] == [0]
    assert analysis["classes"][0]["partner_name"] == "dog"
    assert "cat: 0.3" in capsys.readouterr().out  # 0.4 of cat's images mistaken at s = 0.08, 0.05 at s = 1


def test_readme_setup_commands_match_ci():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in text, ".ci/run must run the README's test command"
    assert "pip install -e . && python -m jaxlab.main" in text
