"""Regression tests for the findings of issue 12 ("the toolkit as a product"), each
named ``test_finding_<n>_...``; every one failed on the code before the issue's fixes.
(Finding 1, packaging, is in ``test_layout.py``; finding 9's help texts and the README's
option tables in ``test_readme_options.py``.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nprnn
from nprnn.app import cli, memory, viz
from nprnn.app.files import load_arrays
from nprnn.app.train import Trainer

SRC = str(Path(nprnn.__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
NAMES = "anna bob cleo dave eve fay gus hal ida jo kim lea max ned oda pia quin ray".split()
TINY = ["--hidden", "8", "--batch-size", "4", "--eval-every", "4", "--warmup", "2",
        "--samples", "2", "--quiet"]  # fmt: skip


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nprnn: error: ") and " — " in lines[0], err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "names.txt"
    p.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    return p


@pytest.fixture
def prose(tmp_path):
    p = tmp_path / "prose.txt"
    p.write_text("the cat sat on the mat.\nthe dog ate the hat.\n" * 8, encoding="utf-8")
    return p


@pytest.fixture
def lines_run(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--out", out, "--steps", 8, *TINY)[0] == 0
    return out


LABELLED = "".join(f"{n}\t{'a' if n.endswith('a') else 'b'}\n" for n in NAMES * 2)


@pytest.fixture
def labelled(tmp_path):
    p = tmp_path / "names.tsv"
    p.write_text(LABELLED, encoding="utf-8")
    return p


# ----------------------------------------------------------------------------- 2 memory


@pytest.fixture
def eight_gb(monkeypatch):
    """The memory check against a machine with 8 GB available (deterministic)."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 8 * 10**9)


def test_finding_2_a_huge_model_is_refused_fast_and_leaves_no_directory(
    tmp_path, corpus, capsys, eight_gb
):
    out = tmp_path / "huge"
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, "train", "--data", corpus, "--out", out, "--layers", 1000,
                           "--hidden", 512)  # fmt: skip
    assert time.perf_counter() - t0 < 10
    one_line(code, err, "memory", "smaller model")
    assert not out.exists()


def test_finding_2_one_long_line_is_refused_with_what_to_change(tmp_path, capsys, eight_gb):
    data = tmp_path / "long.txt"
    data.write_text("\n".join(NAMES) + "\n" + "ab" * 50_000 + "\n", encoding="utf-8")
    val = tmp_path / "val.txt"
    val.write_text("\n".join(NAMES[:5]) + "\n", encoding="utf-8")
    out = tmp_path / "long"
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, "train", "--data", data, "--out", out, "--val-data", val)
    assert time.perf_counter() - t0 < 10
    line = one_line(code, err, "100,000 characters", "--mode stream", "--max-len")
    assert "1 line(s) longer than" in line
    assert not out.exists()
    # --max-len splits the long line (and says how many it cut); the run then fits
    code, _, err = run_cli(capsys, "train", "--data", data, "--val-data", val, "--out", out,
                           "--max-len", 1000, "--steps", 2, "--hidden", 4, "--batch-size", 2,
                           "--eval-every", 2, "--samples", 0)  # fmt: skip
    assert code == 0, err
    assert "--max-len 1000: split 1 line(s) longer than 1000 characters" in err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["max_len"] == 1000 and cfg["data"]["lines_split"] == 1


def test_finding_2_a_start_that_fails_leaves_no_directory(tmp_path, corpus, capsys, monkeypatch):
    def boom(self):
        raise MemoryError("simulated")

    monkeypatch.setattr(Trainer, "_train_step", boom)
    out = tmp_path / "oom"
    code, _, err = run_cli(capsys, "train", "--data", corpus, "--out", out, *TINY)
    one_line(code, err, "out of memory")
    assert not out.exists()


# ----------------------------------------------------------------------------- 3 damage


@pytest.mark.parametrize("damage", ["truncate model", "config not json", "truncate best"])
def test_finding_3_a_damaged_run_directory_is_an_error_naming_the_file(lines_run, capsys, damage):
    name = {"truncate model": "model.safetensors", "config not json": "config.json",
            "truncate best": "best.safetensors"}[damage]  # fmt: skip
    f = lines_run / name
    good = f.read_bytes()
    f.write_bytes(b"{ not json" if name == "config.json" else good[: len(good) // 2])
    for argv in (["sample", lines_run], ["eval", lines_run, "--data", lines_run / "x"],
                 ["viz", lines_run, "--text", "anna"]):  # fmt: skip
        line = one_line(*run_cli(capsys, *argv)[::2], name, f"nprnn repair {lines_run}")
        assert "damaged" in line
    code, out, err = run_cli(capsys, "repair", lines_run)
    assert code == 0 and name in out, err
    assert f.read_bytes() == good
    assert run_cli(capsys, "sample", lines_run, "--n", 2)[0] == 0
    assert run_cli(capsys, "repair", lines_run)[1].strip() == "nothing to repair"


def test_finding_3_copies_are_not_hard_links_of_the_checkpoint(lines_run):
    rec = json.loads((lines_run / "trainer.json").read_text())
    for copy, kind in (("model.safetensors", "model"), ("best.safetensors", "best")):
        a, b = lines_run / copy, lines_run / rec[kind]["file"]
        assert a.read_bytes() == b.read_bytes() and not os.path.samefile(a, b)


# ----------------------------------------------------------------------------- 4 vocabulary


def test_finding_4_config_lists_every_id_with_its_token(lines_run):
    cfg = json.loads((lines_run / "config.json").read_text())
    tokens = cfg["vocab"]["tokens"]
    w = load_arrays(lines_run / "model.safetensors")
    assert len(tokens) == w["embedding.weight"].shape[0] == w["head.weight"].shape[0]
    assert tokens[:3] == ["<pad>", "<bos>", "<eos>"]
    assert tokens[3:] == sorted(set("".join(NAMES)))


# ----------------------------------------------------------------------------- 5 classifier


CLS = ["--hidden", "6", "--batch-size", "4", "--eval-every", "3", "--warmup", "1",
       "--dropout", "0.2", "--quiet"]  # fmt: skip


def test_finding_5_a_classifier_run_resumes_bit_identically_after_ctrl_c(
    tmp_path, labelled, capsys, monkeypatch
):
    common = ["train", "--task", "classify", "--data", labelled, "--steps", 9, *CLS]
    assert run_cli(capsys, *common, "--out", tmp_path / "a")[0] == 0
    original = Trainer._train_step

    def interrupted(self):
        res = original(self)
        if self.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return res

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_train_step", interrupted)
        code, _, err = run_cli(capsys, *common, "--out", tmp_path / "b")
    assert code == 130
    assert "saved a checkpoint at step 5" in err and "--task classify" in err and "--resume" in err
    code, out, err = run_cli(capsys, "train", "--task", "classify", "--out", tmp_path / "b",
                             "--resume", "--quiet")  # fmt: skip
    assert code == 0, err
    wa = load_arrays(tmp_path / "a" / "model.safetensors")
    wb = load_arrays(tmp_path / "b" / "model.safetensors")
    assert all(wa[k].tobytes() == wb[k].tobytes() for k in wa)
    assert json.loads(out)["val"]["n"] > 0


def test_finding_5_classifier_patience_decay_and_divergence(tmp_path, labelled, capsys):
    code, out, err = run_cli(capsys, "train", "--task", "classify", "--data", labelled,
                             "--out", tmp_path / "p", "--steps", 30, "--patience", 1,
                             "--decay", "linear", *CLS)  # fmt: skip
    assert code == 0, err
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["train"]["patience"] == 1 and cfg["train"]["decay"] == "linear"
    code, _, err = run_cli(capsys, "train", "--task", "classify", "--data", labelled,
                           "--out", tmp_path / "d", "--steps", 30, "--lr", 1e4, "--optimizer",
                           "sgd", "--clip", 0, *CLS)  # fmt: skip
    assert code == 3 and "diverged" in err and "--task classify" in err


# ----------------------------------------------------------------------------- 6 clamping


def test_finding_6_seq_len_beyond_the_data_is_an_error(tmp_path, prose, capsys):
    out = tmp_path / "s"
    code, _, err = run_cli(capsys, "train", "--data", prose, "--mode", "stream", "--seq-len",
                           100_000, "--out", out, *TINY)  # fmt: skip
    one_line(code, err, "--seq-len 100000", "at most")
    assert not out.exists()
    # the default adapts, and config.json records the value used
    assert run_cli(capsys, "train", "--data", prose, "--mode", "stream", "--batch-size", 32,
                   "--out", out, "--steps", 2, "--hidden", 4, "--samples", 0,
                   "--quiet")[0] == 0  # fmt: skip
    cfg = json.loads((out / "config.json").read_text())
    n = len(prose.read_text()) * 0.9 // 32
    assert cfg["train"]["seq_len"] < 64 and cfg["train"]["seq_len"] in (n - 1, n - 2)


def test_finding_6_warmup_beyond_steps(tmp_path, corpus, capsys):
    out = tmp_path / "w"
    argv = ["train", "--data", corpus, "--out", out, "--hidden", 4, "--samples", 0, "--quiet"]
    one_line(*run_cli(capsys, *argv, "--warmup", 100, "--steps", 10)[::2], "--warmup 100",
             "--steps 10")  # fmt: skip
    assert not out.exists()
    assert run_cli(capsys, *argv, "--steps", 10, "--eval-every", 5)[0] == 0
    assert json.loads((out / "config.json").read_text())["train"]["warmup"] == 10  # honest


def test_finding_6_seq_len_on_a_lines_run_says_it_does_nothing_there(lines_run, capsys):
    code, _, err = run_cli(capsys, "train", "--out", lines_run, "--resume", "--seq-len", 32)
    one_line(code, err, "--seq-len applies to --mode stream only", "drop --seq-len")
    assert "does not match" not in err


# ----------------------------------------------------------------------------- 7 sample


@pytest.mark.parametrize("mode", ["lines", "stream"])
def test_finding_7_sample_streams_and_ctrl_c_keeps_what_was_printed(
    tmp_path, corpus, prose, capsys, mode
):
    out = tmp_path / mode
    data = corpus if mode == "lines" else prose
    assert run_cli(capsys, "train", "--data", data, "--mode", mode, "--out", out, "--steps", 4,
                   *TINY)[0] == 0  # fmt: skip
    cmd = [sys.executable, "-m", "nprnn", "sample", str(out), "--n", "100000000", "--seed", "0"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.read(64)  # arrives long before 10^8 lines/characters are done
        assert len(first) == 64
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
    assert len(first + rest) >= 64


def test_finding_7_train_samples_in_stream_mode_and_greedy_temperature_zero(
    tmp_path, prose, capsys
):
    out = tmp_path / "s"
    code, stdout, err = run_cli(capsys, "train", "--data", prose, "--mode", "stream",
                                "--seq-len", 8, "--out", out, "--steps", 4, "--hidden", 8,
                                "--batch-size", 4, "--eval-every", 4, "--samples", 3)  # fmt: skip
    assert code == 0, err
    body = stdout.split("samples (temperature 0.8):\n", 1)[1]
    assert len(body.strip("\n").split("\n\n")) == 3  # three samples, not one block
    a = run_cli(capsys, "sample", out, "--temperature", 0, "--n", 50, "--seed", 1)
    b = run_cli(capsys, "sample", out, "--temperature", 0, "--n", 50, "--seed", 2)
    assert a[0] == 0 and a[1] == b[1]  # greedy: the seed does not matter


# ----------------------------------------------------------------------------- 8 eval --mode


def test_finding_8_eval_reads_a_text_in_either_mode(lines_run, tmp_path, prose, capsys):
    from nprnn.app.load import read_run
    from nprnn.app.runs import RunDir

    held = tmp_path / "held.txt"
    held.write_text("anna\nbob\n\neve\n", encoding="utf-8")
    lines = json.loads(run_cli(capsys, "eval", lines_run, "--data", held)[1])
    code, out, err = run_cli(capsys, "eval", lines_run, "--data", held, "--mode", "stream",
                             "--batch-size", 1)  # fmt: skip
    assert code == 0, err
    stream = json.loads(out)
    assert stream["mode"] == "stream" and np.isfinite(stream["loss"])
    # reference: <bos> anna <eos> <bos> bob <eos> ... as one sequence, the state carried,
    # predicting every character and <eos>, never the <bos> after an <eos>
    loaded = read_run(RunDir(lines_run), "best")
    v, m = loaded.vocab, loaded.model
    ids = np.concatenate([np.r_[v.bos_id, v.encode(w), v.eos_id] for w in ("anna", "bob", "eve")])
    logits, _ = m.logits(ids[:-1, None])
    z = logits[:, 0].astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    keep = ids[1:] != v.bos_id
    want = -logp[np.arange(len(ids) - 1), ids[1:]][keep].mean()
    assert stream["loss"] == pytest.approx(want, rel=1e-5)
    assert lines["loss"] != pytest.approx(stream["loss"], rel=1e-9)  # other reading: zero states
    # a stream run read in lines mode: each line from a zero state, newline as start and end
    s = tmp_path / "s"
    assert run_cli(capsys, "train", "--data", prose, "--mode", "stream", "--seq-len", 8,
                   "--out", s, "--steps", 4, *TINY)[0] == 0  # fmt: skip
    res = json.loads(run_cli(capsys, "eval", s, "--data", prose, "--mode", "lines")[1])
    assert res["mode"] == "lines" and np.isfinite(res["loss"])


def test_finding_8_a_stream_run_without_newlines_says_why_lines_mode_cannot_work(tmp_path, capsys):
    data = tmp_path / "one.txt"
    data.write_text("the cat sat on the mat. " * 20, encoding="utf-8")
    s = tmp_path / "s"
    assert run_cli(capsys, "train", "--data", data, "--mode", "stream", "--seq-len", 8,
                   "--out", s, "--steps", 2, *TINY)[0] == 0  # fmt: skip
    one_line(*run_cli(capsys, "eval", s, "--data", data, "--mode", "lines")[::2], "newline",
             "--mode stream")  # fmt: skip


# ----------------------------------------------------------------------------- 9 help, README


README = Path(__file__).resolve().parents[1] / "README.md"
GUIDES = Path(__file__).resolve().parents[1] / "docs" / "guides"  # the README's long sections


def test_finding_9_the_readme_viz_example_works_on_the_readme_run(lines_run, tmp_path, capsys):
    import re
    import shlex

    page = (GUIDES / "beyond-lm.md").read_text()
    cmd = next(line for line in page.splitlines() if "nprnn viz " in line)
    argv = shlex.split(re.search(r"`(nprnn viz [^`]+)`", cmd).group(1))[2:]
    text = argv[argv.index("--text") + 1]
    bundled = (Path(nprnn.__file__).parent / "app" / "corpora" / "first_names.txt").read_text()
    assert set(text) <= set(bundled), "the README's viz text must be made of the names' letters"
    r = tmp_path / "r"  # the README's run: the bundled names (two tiny steps here)
    assert run_cli(capsys, "train", "--out", r, "--steps", 2, *TINY)[0] == 0
    swap = {"runs/names-lstm": str(r), "page.html": str(tmp_path / "page.html")}
    argv = [swap.get(a, a) for a in argv]
    code, _, err = run_cli(capsys, "viz", *argv)
    assert code == 0, err


def test_finding_9_grad_norms_defaults_to_the_three_cells(capsys):
    code, out, _ = run_cli(capsys, "task", "grad-norms", "--T", 4, "--hidden", 2,
                           "--batch-size", 2, "--no-plot")  # fmt: skip
    assert code == 0 and set(json.loads(out)["norms"]) == {"rnn", "lstm", "gru"}


def test_finding_9_the_readme_says_what_the_tests_enforce():
    text = README.read_text()
    assert "1e-15" not in text and "1e-10 in float64" in text
    for page in GUIDES.glob("*.md"):
        assert "1e-15" not in page.read_text(), page.name


def test_finding_9_a_run_of_the_wrong_kind_says_what_it_is(tmp_path, labelled, capsys):
    c = tmp_path / "c"
    assert run_cli(capsys, "train", "--task", "classify", "--data", labelled, "--out", c,
                   "--steps", 2, *CLS)[0] == 0  # fmt: skip
    for argv in (["sample", c], ["viz", c, "--text", "anna"]):
        line = one_line(*run_cli(capsys, *argv)[::2], "sequence classifier",
                        "nprnn train --task classify")  # fmt: skip
        assert "pass a directory written by nprnn train" in line


# ----------------------------------------------------------------------------- 10 viz colours


def test_finding_10_the_viz_page_has_a_legend_and_readable_text(lines_run):
    page = viz.visualize(lines_run, "anna", units=[0, 1], gate="h")
    assert 'class="legend"' in page and "colour scale" in page
    for v in (-1, -0.5, 0, 0.5, 1):
        assert viz.colour(v) in page.split('class="legend"')[1]
    assert viz.text_colour("#0000ff") == "#ffffff"  # saturated blue: white text
    assert viz.text_colour("#ffffff") == "#000000"
    assert viz.text_colour(viz.colour(-0.9)) == "#ffffff"
    assert viz.text_colour(viz.colour(0.2)) == "#000000"
