"""The README's notebook snippet runs as written, so it never goes stale."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _snippet() -> str:
    text = README.read_text()
    match = re.search(r"<!-- notebook-snippet[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its notebook snippet"
    return match.group(1)


def test_notebook_snippet_runs(tmp_path, capsys):
    code = _snippet().replace('"/tmp/jaxlab_notebook"', repr(str(tmp_path / "nb")))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert len(result["per_class_accuracy"]) == 10
    assert result["accuracy"] > 0.9, "5 epochs on digits reach about 98%"
    assert 0 <= namespace["worst"] < 10
    assert "class 9:" in capsys.readouterr().out


def test_readme_setup_commands_match_ci():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in text, ".ci/run must run the README's test command"
    assert "pip install -e . && python -m jaxlab.main" in text
