"""The nprnn command line, end to end: train, sample, eval, resume, and every bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nprnn.app import cli
from nprnn.app.files import load_arrays
from nprnn.app.train import Trainer

NAMES = [
    "anna",
    "bob",
    "cleo",
    "dave",
    "eve",
    "fay",
    "gus",
    "hal",
    "ida",
    "jo",
    "kim",
    "lea",
    "max",
    "ned",
    "oda",
    "pia",
    "quin",
    "ray",
    "sam",
    "tom",
    "uma",
    "vic",
    "wes",
    "xia",
    "yan",
    "zoe",
    "abel",
    "bea",
    "cal",
    "dina",
]
TINY = [
    "--hidden",
    "8",
    "--batch-size",
    "4",
    "--eval-every",
    "4",
    "--warmup",
    "2",
    "--samples",
    "2",
    "--quiet",
]


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "names.txt"
    p.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    return p


@pytest.fixture
def prose(tmp_path):
    p = tmp_path / "prose.txt"
    p.write_text("the cat sat on the mat. the dog ate the hat. " * 8, encoding="utf-8")
    return p


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nprnn: error: ") and " — " in lines[0], lines[0]
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def snapshot(d: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(d.iterdir())}


# ---------------------------------------------------------------------------- happy paths


def test_train_sample_eval(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "train", "--data", corpus, "--out", out, "--steps", 8, *TINY)
    assert code == 0
    assert "validation loss" in stdout and "samples" in stdout
    for name in (
        "config.json",
        "model.safetensors",
        "best.safetensors",
        "trainer.json",
        "log.jsonl",
    ):
        assert (out / name).is_file(), name
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [4, 8] and all(np.isfinite(r["val_loss"]) for r in log)
    try:
        import matplotlib  # noqa: F401

        assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    except ImportError:
        pass

    code, stdout, _ = run_cli(capsys, "sample", out, "--n", 5, "--seed", 1, "--prime", "a")
    assert code == 0
    samples = stdout.splitlines()
    assert len(samples) == 5 and all(s.startswith("a") for s in samples)
    assert run_cli(capsys, "sample", out, "--n", 5, "--seed", 1, "--prime", "a")[1] == stdout

    code, stdout, _ = run_cli(capsys, "eval", out, "--data", corpus)
    assert code == 0
    res = json.loads(stdout)
    assert res["bits_per_char"] == pytest.approx(res["loss"] / np.log(2))
    assert res["perplexity"] == pytest.approx(np.exp(res["loss"]))
    # every prediction counts: <bos>+chars predicts chars+<eos>, one line at a time
    assert res["loss"] == pytest.approx(_reference_loss(out, NAMES), rel=1e-5)
    one = json.loads(run_cli(capsys, "eval", out, "--data", corpus, "--batch-size", 1)[1])
    assert one["loss"] == pytest.approx(res["loss"], rel=1e-5)


def _reference_loss(run: Path, lines) -> float:
    from nprnn.app.charlm import CharLM
    from nprnn.app.text import Vocab

    cfg = json.loads((run / "config.json").read_text())
    vocab = Vocab.from_dict(cfg["vocab"])
    model = CharLM.from_config(cfg["model"])
    model.load_state_dict(load_arrays(run / "best.safetensors"))
    total, count = 0.0, 0
    for line in lines:
        ids = [vocab.bos_id, *vocab.encode(line), vocab.eos_id]
        logits, _ = model.logits(np.array(ids[:-1])[:, None])
        z = logits[:, 0].astype(np.float64)
        logz = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
        total += float((logz - z[np.arange(len(ids) - 1), ids[1:]]).sum())
        count += len(ids) - 1
    return total / count


def test_stream_mode_train_sample_eval(tmp_path, prose, capsys):
    out = tmp_path / "s"
    code, _, _ = run_cli(
        capsys,
        "train",
        "--data",
        prose,
        "--mode",
        "stream",
        "--seq-len",
        8,
        "--out",
        out,
        "--steps",
        8,
        *TINY,
    )
    assert code == 0
    code, stdout, _ = run_cli(capsys, "sample", out, "--n", 40, "--prime", "the ", "--seed", 0)
    assert code == 0 and stdout.startswith("the ") and len(stdout.rstrip("\n")) == 44
    res = json.loads(run_cli(capsys, "eval", out, "--data", prose)[1])
    assert res["mode"] == "stream" and 0 < res["loss"] < 10


def _interrupt_at(monkeypatch, step):
    """Make the trainer receive a real SIGINT right after ``step``."""
    original = Trainer._train_step

    def wrapped(self):
        res = original(self)
        if self.step == step:
            os.kill(os.getpid(), signal.SIGINT)
        return res

    monkeypatch.setattr(Trainer, "_train_step", wrapped)


@pytest.mark.parametrize("mode", ["lines", "stream"])
def test_resume_after_ctrl_c_is_bit_identical(tmp_path, corpus, prose, capsys, monkeypatch, mode):
    data = corpus if mode == "lines" else prose
    common = [
        "--data",
        data,
        "--mode",
        mode,
        *(["--seq-len", 6] if mode == "stream" else []),
        "--steps",
        14,
        "--layers",
        2,
        "--dropout",
        0.3,
        *TINY,
    ]
    assert run_cli(capsys, "train", *common, "--out", tmp_path / "a")[0] == 0
    with monkeypatch.context() as m:
        _interrupt_at(m, 6)  # between two evaluations
        code, _, err = run_cli(capsys, "train", *common, "--out", tmp_path / "b")
    assert code == 130 and "--resume" in err
    assert json.loads((tmp_path / "b" / "trainer.json").read_text())["step"] == 6
    assert run_cli(capsys, "train", "--out", tmp_path / "b", "--resume", "--quiet")[0] == 0
    _assert_same_weights(tmp_path / "a", tmp_path / "b")
    logs = [(tmp_path / r / "log.jsonl").read_text().splitlines() for r in "ab"]
    assert [json.loads(x)["step"] for x in logs[0]] == [json.loads(x)["step"] for x in logs[1]]


def test_resume_with_more_steps_is_bit_identical(tmp_path, prose, capsys):
    common = ["--data", prose, "--mode", "stream", "--seq-len", 5, "--decay", "none", *TINY]
    assert run_cli(capsys, "train", *common, "--steps", 13, "--out", tmp_path / "a")[0] == 0
    assert run_cli(capsys, "train", *common, "--steps", 7, "--out", tmp_path / "b")[0] == 0
    assert run_cli(capsys, "train", "--out", tmp_path / "b", "--resume", "--steps", 13)[0] == 0
    _assert_same_weights(tmp_path / "a", tmp_path / "b")


def test_resume_of_a_finished_run_refreshes_copies_a_kill_left_stale(tmp_path, corpus, capsys):
    """A kill after the last checkpoint's commit but before its user copies were written
    leaves the previous checkpoint's model.safetensors and best.safetensors; resuming
    (even with nothing left to train) rewrites them from the committed checkpoint."""
    run = tmp_path / "r"
    common = ["--data", corpus, "--eval-every", 5, *TINY]
    assert run_cli(capsys, "train", *common, "--steps", 5, "--out", run)[0] == 0
    stale = {n: (run / n).read_bytes() for n in ("model.safetensors", "best.safetensors")}
    assert run_cli(capsys, "train", "--out", run, "--resume", "--steps", 10)[0] == 0
    fresh = {n: (run / n).read_bytes() for n in stale}
    assert all(fresh[n] != stale[n] for n in stale)  # step 10 trained on: the copies moved
    for n, data in stale.items():  # what the kill between commit and copies leaves
        (run / n).write_bytes(data)
    assert run_cli(capsys, "train", "--out", run, "--resume", "--steps", 10)[0] == 0
    assert {n: (run / n).read_bytes() for n in stale} == fresh


def _assert_same_weights(a: Path, b: Path):
    wa, wb = load_arrays(a / "model.safetensors"), load_arrays(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k


def test_same_seed_same_run_other_seed_differs(tmp_path, corpus, capsys):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        argv = ("train", "--data", corpus, "--steps", 4, "--seed", seed, *TINY)
        assert run_cli(capsys, *argv, "--out", tmp_path / name)[0] == 0
    _assert_same_weights(tmp_path / "a", tmp_path / "b")
    with pytest.raises(AssertionError):
        _assert_same_weights(tmp_path / "a", tmp_path / "c")


def test_divergence_stops_with_status_3_and_keeps_the_checkpoint(tmp_path, corpus, capsys):
    out = tmp_path / "d"
    code, _, err = run_cli(
        capsys,
        "train",
        "--data",
        corpus,
        "--out",
        out,
        "--steps",
        40,
        "--lr",
        50,
        "--optimizer",
        "sgd",
        "--clip",
        0,
        "--warmup",
        0,
        "--hidden",
        8,
        "--batch-size",
        4,
        "--eval-every",
        100,
    )
    assert code == 3, err
    assert "diverged" in err and "--lr" in err and "--resume" in err
    assert json.loads((out / "trainer.json").read_text())["step"] == 0  # the last good one
    assert (
        run_cli(capsys, "train", "--out", out, "--resume", "--lr", 0.01, "--steps", 4, "--quiet")[0]
        == 0
    )


def test_weights_load_into_torch(tmp_path, corpus, capsys):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    out = tmp_path / "t"
    argv = ("train", "--data", corpus, "--out", out, "--steps", 4, "--layers", 2, *TINY)
    assert run_cli(capsys, *argv)[0] == 0
    sd = st.load_file(str(out / "model.safetensors"))
    V, H = sd["head.weight"].shape
    emb, lstm, head = torch.nn.Embedding(V, H), torch.nn.LSTM(H, H, 2), torch.nn.Linear(H, V)
    emb.load_state_dict({"weight": sd["embedding.weight"]})
    lstm.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("rnn.")})
    head.load_state_dict({"weight": sd["head.weight"], "bias": sd["head.bias"]})
    from nprnn.app.charlm import CharLM

    cfg = json.loads((out / "config.json").read_text())
    model = CharLM.from_config(cfg["model"])
    model.load_state_dict(load_arrays(out / "model.safetensors"))
    x = np.random.default_rng(0).integers(0, V, size=(6, 2))
    with torch.no_grad():
        ref = head(lstm(emb(torch.from_numpy(x)))[0]).numpy()
    np.testing.assert_allclose(model.logits(x)[0], ref, rtol=1e-4, atol=1e-5)


def test_python_dash_m_subprocess(tmp_path, corpus):
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[2])}
    out = tmp_path / "p"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "nprnn",
            "train",
            "--data",
            str(corpus),
            "--out",
            str(out),
            "--steps",
            "4",
            *TINY,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "validation loss" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "nprnn", "eval", str(out), "--data", "/nonexistent"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("nprnn: error: ") and "not found" in r.stderr


def test_help_shows_defaults(capsys):
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0
    assert "(default: 128)" in out and "(default: lstm)" in out and "--resume" in out
    assert "--threads" in out and "exit status" in out


def test_bench_is_dispatched_lazily(monkeypatch):
    import types

    seen = []
    fake = types.ModuleType("nprnn.app.bench")
    fake.cmd_bench = lambda opts, given: seen.append((opts.json, opts.repeat)) or 0
    monkeypatch.setitem(sys.modules, "nprnn.app.bench", fake)
    import nprnn.app

    monkeypatch.setattr(nprnn.app, "bench", fake, raising=False)
    assert cli.main(["bench", "--json", "--repeat", "2"]) == 0
    assert seen == [(True, 2)]


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "content,needle", [(None, "not found"), (b"", "empty"), (b"\xff\xfe\x00bad", "UTF-8")]
)
def test_bad_data_files(tmp_path, capsys, content, needle):
    f = tmp_path / "data.txt"
    if content is not None:
        f.write_bytes(content)
    code, _, err = run_cli(capsys, "train", "--data", f, "--out", tmp_path / "o", *TINY)
    assert_usage_error(code, err, needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--hidden", "0"],
        ["--lr", "-1"],
        ["--lr", "nan"],
        ["--mode", "words"],
        ["--dropout", "1"],
        ["--steps", "x"],
        ["--bogus"],
    ],
)
def test_bad_options(tmp_path, corpus, capsys, argv):
    code, _, err = run_cli(capsys, "train", "--data", corpus, "--out", tmp_path / "o", *argv)
    assert_usage_error(code, err)
    assert not (tmp_path / "o").exists()


def test_occupied_out_is_refused_without_resume_or_force(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    argv = ("train", "--data", corpus, "--out", out, "--steps", 4, *TINY)
    assert run_cli(capsys, *argv)[0] == 0
    before = snapshot(out)
    assert_usage_error(*run_cli(capsys, *argv)[::2], "--resume", "--force")
    assert snapshot(out) == before
    # a mismatching architecture on --resume is refused too, and changes nothing
    assert_usage_error(*run_cli(capsys, *argv, "--resume", "--hidden", 16)[::2], "--hidden")
    assert snapshot(out) == before
    assert run_cli(capsys, *argv, "--force", "--seed", 1)[0] == 0
    assert snapshot(out) != before
    log = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in log] == [4]  # the old run's log is gone


def test_missing_val_data(tmp_path, corpus, capsys):
    argv = ("train", "--data", corpus, "--val-data", tmp_path / "nope.txt", "--out", tmp_path / "o")
    assert_usage_error(*run_cli(capsys, *argv)[::2], "--val-data", "not found")
    assert not (tmp_path / "o").exists()


def test_resume_without_a_run_and_unwritable_out(tmp_path, corpus, capsys):
    assert_usage_error(
        *run_cli(capsys, "train", "--data", corpus, "--out", tmp_path / "none", "--resume")[::2],
        "--resume",
    )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "train", "--data", corpus, "--out", blocker / "sub", *TINY)
    assert_usage_error(code, err, "--out")
    assert blocker.read_text() == "x"


def test_resume_with_changed_data_is_refused(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--out", out, "--steps", 4, *TINY)[0] == 0
    corpus.write_text("\n".join(NAMES[:-1]) + "\n")
    before = snapshot(out)
    assert_usage_error(*run_cli(capsys, "train", "--out", out, "--resume")[::2], "differs")
    assert snapshot(out) == before


def test_corrupted_foreign_and_unseen(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--out", out, "--steps", 4, *TINY)[0] == 0
    unseen = tmp_path / "unseen.txt"
    unseen.write_text("Ωmega\n", encoding="utf-8")
    assert_usage_error(*run_cli(capsys, "eval", out, "--data", unseen)[::2], "vocabulary")
    assert_usage_error(*run_cli(capsys, "sample", out, "--prime", "Ω")[::2], "vocabulary")
    assert_usage_error(*run_cli(capsys, "sample", tmp_path)[::2])  # not a run
    assert_usage_error(*run_cli(capsys, "eval", out)[::2], "--data")  # required option
    ckpt = next(out.glob("ckpt-*.best.safetensors"))
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated
    before = snapshot(out)
    for argv in (
        ["sample", out],
        ["eval", out, "--data", corpus],
        ["train", "--out", out, "--resume"],
    ):
        assert_usage_error(*run_cli(capsys, *argv)[::2])
    assert snapshot(out) == before
    (out / "trainer.json").write_text("{not json")
    assert_usage_error(*run_cli(capsys, "sample", out)[::2], "trainer.json")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"format": "something-else"}')
    (foreign / "model.safetensors").write_bytes(b"")
    assert_usage_error(*run_cli(capsys, "sample", foreign)[::2])


# ---------------------------------------------------------------------------- damaged runs


def _resign(run: Path, mutate) -> None:
    """Edit trainer.json and recompute its checksum (consistent, but wrong)."""
    from nprnn.app.files import canonical_json, sha256_hex

    rec = json.loads((run / "trainer.json").read_text())
    rec.pop("checksum")
    mutate(rec)
    rec["checksum"] = sha256_hex(canonical_json(rec).encode("utf-8"))
    (run / "trainer.json").write_text(canonical_json(rec))


def _weights_only(run: Path, dest: Path, *, config=None, scale_head=None) -> Path:
    from nprnn.app.files import save_arrays

    dest.mkdir()
    cfg = json.loads((run / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps(config(cfg) if config else cfg))
    w = load_arrays(run / "model.safetensors")
    if scale_head is not None:
        w["head.weight"] = w["head.weight"] * np.float32(scale_head)
    save_arrays(dest / "model.safetensors", w)
    return dest


@pytest.fixture
def finished(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", corpus, "--out", out, "--steps", 4, *TINY)[0] == 0
    return out


def test_eval_of_a_hopeless_model_prints_strict_json(finished, tmp_path, corpus, capsys):
    d = _weights_only(finished, tmp_path / "bad", scale_head=1e5)
    code, out, err = run_cli(capsys, "eval", d, "--data", corpus)
    assert code == 0, err

    def no_constants(c):
        raise AssertionError(f"not strict JSON: {c}")

    res = json.loads(out, parse_constant=no_constants)
    assert res["loss"] > 709.8 and res["perplexity"] is None and res["mode"] == "lines"
    from nprnn.app.load import perplexity

    assert perplexity(709.0) == pytest.approx(np.exp(709.0))
    assert perplexity(710.0) is None


def test_eval_and_sample_of_a_weights_only_directory(finished, tmp_path, corpus, capsys):
    def drop(c):
        del c["train"], c["data"]
        return c

    d = _weights_only(finished, tmp_path / "w", config=drop)
    code, out, err = run_cli(capsys, "eval", d, "--data", corpus)
    assert code == 0, err
    want = json.loads(
        run_cli(capsys, "eval", finished, "--data", corpus, "--checkpoint", "last")[1]
    )
    assert json.loads(out) == want
    assert run_cli(capsys, "sample", d, "--n", 2)[0] == 0


@pytest.mark.parametrize(
    "key, value",
    [("hidden", 10**6), ("layers", 10**9), ("vocab_size", 10**9), ("embedding_dim", 10**8)],
)
def test_a_config_asking_for_a_huge_model_is_refused_at_once(
    finished, tmp_path, capsys, key, value
):
    import time

    def edit(c):
        c["model"][key] = value
        return c

    d = _weights_only(finished, tmp_path / "w", config=edit)
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, "sample", d, "--n", 1)
    assert_usage_error(code, err, "config", "damaged or foreign")
    assert time.perf_counter() - t0 < 5


def test_out_of_memory_is_one_line(monkeypatch, finished, capsys):
    def boom(args):
        raise MemoryError

    from nprnn.app import lmcli

    monkeypatch.setattr(lmcli, "cmd_sample", lambda opts, given: boom(opts))
    assert_usage_error(*run_cli(capsys, "sample", finished)[::2], "out of memory")


def test_a_tiny_temperature_samples_greedily(finished, capsys):
    with np.errstate(all="raise"):
        code, out, err = run_cli(capsys, "sample", finished, "--temperature", "1e-320")
    assert code == 0 and err == ""
    again = run_cli(capsys, "sample", finished, "--temperature", "1e-300", "--seed", "3")[1]
    assert out == again and len(set(out.splitlines())) == 1  # greedy: every line the same


@pytest.mark.parametrize(
    "name, mutate, needle",
    [
        ("no data", lambda r: r["config"].pop("data"), "'data'"),
        ("no train", lambda r: r["config"].pop("train"), "'train'"),
        ("bad sha", lambda r: r["config"]["data"].update(train_sha256=7), "train_sha256"),
        ("bad lr", lambda r: r["config"]["train"].update(lr="x"), "--lr"),
        ("bad steps", lambda r: r["config"]["train"].update(steps=2.5), "--steps"),
        ("bad mode", lambda r: r["config"]["train"].update(mode="stream"), "mode"),
        ("rng", lambda r: r["state"]["model_rng"].update(uinteger=-1), "model_rng"),
        ("rng kind", lambda r: r["state"]["model_rng"].update(bit_generator="SFC64"), "model_rng"),
        ("record", lambda r: r["state"]["record"].update(bad_evals="x"), "bad_evals"),
        ("record keys", lambda r: r["state"]["record"].pop("best_val"), "record"),
        ("best step", lambda r: r["state"]["record"].update(best_step=99), "best_step"),
        ("step", lambda r: r["state"].update(step="4"), "step"),
        ("no state", lambda r: r["state"].pop("batcher"), "batcher"),
        ("optimizer", lambda r: r["state"]["optimizer"].update(optimizer="sgd"), "optimizer"),
        ("batcher", lambda r: r["state"]["batcher"].update(position=-1), "position"),
    ],
)
def test_resume_refuses_a_consistent_but_damaged_record(finished, capsys, name, mutate, needle):
    _resign(finished, mutate)
    before = snapshot(finished)
    code, _, err = run_cli(capsys, "train", "--out", finished, "--resume", "--steps", 8)
    assert_usage_error(code, err, needle, "damaged or foreign")
    assert "check the command's options" not in err and "--force" in err
    assert snapshot(finished) == before


def test_resume_of_a_run_of_another_version_says_so(finished, capsys):
    _resign(finished, lambda r: r["config"].update(version=1))
    before = snapshot(finished)
    code, _, err = run_cli(capsys, "train", "--out", finished, "--resume", "--steps", 8)
    assert_usage_error(code, err, "another version of nprnn", "start a new run")
    assert snapshot(finished) == before
