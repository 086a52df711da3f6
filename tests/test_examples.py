"""The examples run as a user runs them (``python examples/NAME.py``) and print what they claim."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name, *args):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    r = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                       text=True, timeout=300, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout


def number(pattern, text):
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in:\n{text}"
    return float(m.group(1))


def losses(text):
    return [float(x) for x in re.findall(r"loss ([0-9.]+)", text)]


def test_tagger():
    out = run("tagger.py")
    ls = losses(out)
    assert len(ls) >= 3 and ls[-1] < 0.5 * ls[0]
    assert number(r"held-out tag accuracy ([0-9.]+)", out) > 0.85  # chance 0.25


def test_siamese():
    out = run("siamese.py")
    ls = losses(out)
    assert len(ls) >= 3 and ls[-1] < 0.5 * ls[0]
    assert number(r"held-out same-source accuracy ([0-9.]+)", out) > 0.85  # chance 0.5


def test_classifier_saves_reloads_and_exports(tmp_path):
    pytest.importorskip("torch")
    out = run("classifier.py", "--out", str(tmp_path))
    assert number(r"held-out accuracy ([0-9.]+)", out) > 0.75  # chance 0.33
    assert (tmp_path / "classifier.safetensors").is_file()
    assert number(r"reloaded model: max \|logit difference\| ([0-9.e+-]+)", out) == 0.0
    assert number(r"torch.nn twin from the same file: max \|logit difference\| ([0-9.e+-]+)",
                  out) < 1e-5  # fmt: skip
