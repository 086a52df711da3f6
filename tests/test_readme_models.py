"""The "Your own models" guide's code (docs/guides/models.md, moved from the README in
issue 15) runs as written and prints what it says."""

import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "guides" / "models.md"


def blocks():
    text = PAGE.read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_custom_model_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    code = blocks()
    assert len(code) == 2  # define, train, save, load; then export to torch
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    namespace = {"__name__": "__readme__"}
    with contextlib.redirect_stdout(out):
        for block in code:
            exec(compile(block, str(PAGE), "exec"), namespace)
    printed = out.getvalue()
    assert "['emb.weight', 'rnn.weight_ih_l0', 'rnn.weight_hh_l0']" in printed
    first = namespace["model"]
    assert (tmp_path / "tagger.safetensors").is_file() and first is not namespace["again"]
    loss = float(re.search(r"loss after 20 steps: ([0-9.]+)", printed).group(1))
    assert loss < 0.5  # from ln 3 = 1.10 at the start (0.09 measured)
    diff = float(re.search(r"max \|torch - nprnn\| = ([0-9.e+-]+)", printed).group(1))
    assert diff < 1e-5
