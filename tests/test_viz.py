"""Pictures: the activation page of a char-LM run, colours, loss plots."""

from __future__ import annotations

import html
import json
import re
import sys

import numpy as np
import pytest

from nprnn.app import cli, viz
from nprnn.app.charlm import CharLM
from nprnn.app.errors import CheckpointError, DataError
from nprnn.app.files import atomic_write_json, save_arrays
from nprnn.app.text import Vocab

PNG = b"\x89PNG\r\n\x1a\n"
LINES = ["anna", "bob", "<script>alert(1)</script>", "a & b"]
COLOUR = re.compile(r"background:#[0-9a-f]{6};color:#(?:000000|ffffff)\"")


def _make_run(path, model="lstm", layers=2, lines_mode=True):
    """A run directory as nprnn train writes it (config.json + model.safetensors)."""
    vocab = Vocab.build(LINES if lines_mode else ["\n".join(LINES)], lines_mode=lines_mode)
    lm = CharLM(len(vocab), model=model, hidden=6, layers=layers, rng=0)
    path.mkdir()
    atomic_write_json(
        path / "config.json",
        {"format": "nprnn-charlm", "version": 1, "model": lm.config(), "vocab": vocab.to_dict()},
    )
    save_arrays(path / "model.safetensors", lm.state_dict())
    return lm, vocab


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layer", [0, -1])
def test_trace_agrees_with_the_model(tmp_path, model, layer):
    lm, vocab = _make_run(tmp_path / "r", model=model)
    ids = np.concatenate([[vocab.bos_id], vocab.encode("anna & bob")])
    rec = viz.trace(lm.eval(), ids, layer=layer)
    x = lm.embedding(ids[:, None])
    lm.rnn.eval()
    out, _ = lm.rnn(x)
    logits, _ = lm.logits(ids[:, None])
    np.testing.assert_allclose(rec["logits"], logits[:, 0], rtol=1e-4, atol=1e-5)
    if layer == -1:
        np.testing.assert_allclose(rec["h"], out[:, 0], rtol=1e-4, atol=1e-6)
    expected = {"lstm": "hcifgo", "gru": "hrzn", "rnn": "h"}[model]
    assert set(expected) | {"logits"} == set(rec)
    if model == "lstm":  # h = o tanh(c) holds in the trace
        np.testing.assert_allclose(rec["h"], rec["o"] * np.tanh(rec["c"]), rtol=1e-12)


def test_colour_scale():
    assert viz.colour(-1) == "#0000ff"
    assert viz.colour(0) == "#ffffff"
    assert viz.colour(1) == "#ff0000"
    assert viz.colour(5) == "#ff0000" and viz.colour(-7) == "#0000ff"
    assert viz.colour(0.5) == "#ff8080"
    assert viz.colour(float("nan")) == "#ffffff"


def test_page_has_one_element_per_character_and_escapes(tmp_path):
    _make_run(tmp_path / "r")
    text = "<script>alert(1)</script>"
    page = viz.visualize(tmp_path / "r", text, units=[0, 5], gate="f")
    assert "<script" not in page and "&lt;" in page
    rows = re.findall(r'<div class="row">(.*?)</div>', page)
    assert len(rows) == 3  # two units and the predictions
    for row in rows:
        assert row.count('class="ch') == len(text)
    shown = re.findall(r'<span class="ch" [^>]*>(.*?)</span>', rows[0])
    assert html.unescape("".join(shown)) == text  # one escaped element per character
    colours = COLOUR.findall(page)
    assert len(colours) == 2 * len(text) + 5  # and the legend's five swatches
    assert 'title="&#x27;&lt;&#x27; t=0 f[0]=' in page  # exact value in the title
    assert "next: " in page


def test_default_units_are_the_most_varying(tmp_path):
    lm, vocab = _make_run(tmp_path / "r", model="gru", layers=1)
    text = "anna bob"
    page = viz.visualize(tmp_path / "r", text, top=2)
    rec = viz.trace(lm.eval(), np.concatenate([[vocab.bos_id], vocab.encode(text)]))
    best = np.argsort(-rec["h"][1:].std(axis=0))[:2]
    labels = re.findall(r'<span class="lab">h\[(\d+)\]</span>', page)
    assert [int(u) for u in labels] == list(best)


def test_stream_mode_run(tmp_path):
    _make_run(tmp_path / "r", model="rnn", layers=1, lines_mode=False)
    page = viz.visualize(tmp_path / "r", "bob\nanna", units=[1])
    row = re.findall(r'<div class="row">(.*?)</div>', page)[0]
    assert row.count('class="ch') == 8 and "⏎" in row


def test_bad_input(tmp_path, capsys):
    _make_run(tmp_path / "r", model="gru")
    with pytest.raises(ValueError, match="gate"):
        viz.visualize(tmp_path / "r", "anna", gate="c")
    with pytest.raises(ValueError, match="units"):
        viz.visualize(tmp_path / "r", "anna", units=[6])
    with pytest.raises(DataError, match="vocabulary"):
        viz.visualize(tmp_path / "r", "Zoë")
    with pytest.raises(CheckpointError):
        viz.visualize(tmp_path, "anna")
    code, err = _cli(capsys, "viz", tmp_path / "r")
    assert code == 2 and "--text" in err


def _cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 0 or len(err.strip().splitlines()) == 1, err
    return code, err


def test_main_viz_writes_the_page(tmp_path, capsys):
    _make_run(tmp_path / "r")
    out = tmp_path / "p.html"
    assert _cli(capsys, "viz", tmp_path / "r", "--text", "a & b", "--units", "1,2",
                "--gate", "c", "--out", out)[0] == 0  # fmt: skip
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "a &amp; b" not in page  # per character
    assert "&amp;" in page and "<script" not in page


def _write_log(path):
    path.mkdir()
    recs = [{"step": s, "train_loss": 2.0 / s, "val_loss": 2.2 / s} for s in (1, 2, 4)]
    (path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _write_log(tmp_path / "r")
    assert _cli(capsys, "plot", tmp_path / "r")[0] == 0
    assert (tmp_path / "r" / "loss.png").read_bytes()[:8] == PNG
    out = tmp_path / "x.png"
    assert _cli(capsys, "plot", tmp_path / "r", "--out", out)[0] == 0
    assert out.read_bytes()[:8] == PNG


def test_plot_without_matplotlib_says_how_to_install(tmp_path, monkeypatch, capsys):
    _write_log(tmp_path / "r")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    code, err = _cli(capsys, "plot", tmp_path / "r")
    assert code == 2 and "pip install 'nprnn[plot]'" in err


def test_plot_without_a_log(tmp_path, capsys):
    code, err = _cli(capsys, "plot", tmp_path)
    assert code == 2 and "log.jsonl" in err
    (tmp_path / "log.jsonl").write_text('{"event": "start"}\n')
    code, err = _cli(capsys, "plot", tmp_path)
    assert code == 2 and "no evaluation" in err


def test_plot_process_draws_plot_logs_bytes(tmp_path):
    pytest.importorskip("matplotlib")
    _write_log(tmp_path / "r")
    recs = [json.loads(ln) for ln in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert viz.plot_log(recs, tmp_path / "here.png", title="r") is True
    child = viz.PlotProcess.start()
    child.plot(recs, tmp_path / "child.png", title="r")
    assert child.result() is True
    child.close()
    assert (tmp_path / "child.png").read_bytes() == (tmp_path / "here.png").read_bytes()
    child = viz.PlotProcess.start()  # nothing to draw: plot_log's False, no file
    child.plot([{"event": "start"}], tmp_path / "none.png")
    assert child.result() is False and not (tmp_path / "none.png").exists()
    child.close()


def test_plot_process_that_cannot_draw_answers_none(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(viz, "_CHILD", "import sys; sys.stdin.readline(); sys.exit(3)")
    child = viz.PlotProcess.start()
    child.plot([{"step": 1, "train_loss": 1.0}], tmp_path / "x.png")
    assert child.result() is None
    child.close()
    child = viz.PlotProcess.start()  # records that are not JSON: None, the child stopped
    child.plot([{"step": 1, "train_loss": object()}], tmp_path / "x.png")
    assert child.result() is None and child._proc.poll() is not None
    child = viz.PlotProcess.start()  # never asked (an interrupted run): close stops it
    child.close()
    assert child._proc.returncode is not None
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("task", ["lm", "classify"])
@pytest.mark.parametrize("child_works", [True, False])
def test_train_draws_its_plot_in_a_child_or_in_process(tmp_path, monkeypatch, capsys,
                                                       child_works, task):  # fmt: skip
    """Runs of PLOT_CHILD_STEPS steps or more use the child; when it cannot draw, the
    plot is drawn in-process: either way the run holds the same loss.png."""
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(viz, "PLOT_CHILD_STEPS", 3)
    answers = []
    orig = viz.PlotProcess.result

    def result(self, timeout=60.0):
        answers.append(orig(self, timeout))
        return answers[-1]

    monkeypatch.setattr(viz.PlotProcess, "result", result)
    if not child_works:
        monkeypatch.setattr(viz, "_CHILD", "import sys; sys.stdin.readline(); sys.exit(3)")
    out = tmp_path / "run"
    extra = ["--samples", 0] if task == "lm" else ["--task", "classify"]
    code, err = _cli(capsys, "train", "--steps", 3, "--eval-every", 1, "--hidden", 8,
                     *extra, "--quiet", "--out", out)  # fmt: skip
    assert code == 0, err
    assert answers == [True if child_works else None]
    recs = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert viz.plot_log(recs, tmp_path / "here.png", title=out.name) is True
    assert (out / "loss.png").read_bytes() == (tmp_path / "here.png").read_bytes()
