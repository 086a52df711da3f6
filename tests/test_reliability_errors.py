"""The error-message catalogue, and regression tests of the reliability bugs found.

**Catalogue.** One row per distinct error path that the module owners' tests do not
already pin (checked with grep over tests/): the call, the exception type and a regex
over the whole message. Every message is one line, names the argument (or file/option)
and says what was expected; where the package promises it, also what to do.

**Bugs.** Each ``test_bug_*`` states the behaviour the contract asks for, for one bug
the reliability review found (all fixed since; a new one is pinned with ``xbug`` —
a strict xfail — until its fix lands). Ids match the reliability report.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest

import nprnn
from nprnn import classic, optim
from nprnn import functional as F
from nprnn.app.batches import LinesBatcher, StreamBatcher, iter_eval_stream
from nprnn.app.charlm import CharLM
from nprnn.app.errors import CheckpointError, DataError
from nprnn.app.files import (
    arrays_to_bytes,
    atomic_write_bytes,
    canonical_json,
    read_json,
    save_rng,
    sha256_hex,
)
from nprnn.app.runs import RunDir, load_best, save_checkpoint
from nprnn.app.text import Vocab, read_text, split_text, split_train_val
from nprnn.gradcheck import gradcheck

# ----------------------------------------------------------------------------- fixtures

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 2, 4))  # (T, B, F) float64
W_IH, W_HH = RNG.normal(size=(5, 4)) * 0.3, RNG.normal(size=(5, 5)) * 0.3  # RNN, H = 5
L_IH, L_HH = RNG.normal(size=(20, 4)) * 0.3, RNG.normal(size=(20, 5)) * 0.3  # LSTM, H = 5
_, _, LSTM_CACHE = F.lstm_forward(X, None, None, L_IH, L_HH)
_, _, RNN_CACHE = F.rnn_forward(X, None, W_IH, W_HH)
VOCAB = Vocab.build(["abc"], lines_mode=True)
SVOCAB = Vocab.build(["abc"], lines_mode=False)


def params64():
    return {"w": np.ones((2, 3)), "b": np.zeros(3)}


def lstm32(**kw):
    return nprnn.LSTM(3, 4, **kw)


def called(layer, *args):
    layer(*args)
    return layer


class _Odd:  # neither JSON-able nor an array
    pass


# ----------------------------------------------------------------------------- catalogue

CASES = [
    # --- functional kernels -----------------------------------------------------------
    ("F x None", TypeError, r"^x must be an array, got None$",
     lambda: F.rnn_forward(None, None, W_IH, W_HH)),
    ("F x complex", TypeError, r"^x must hold real numbers, got dtype complex128$",
     lambda: F.gru_forward(X.astype(complex), None, L_IH[:15], L_HH[:15])),
    ("F x empty", ValueError,
     r"^x has shape \(0, 2, 4\): expected T ≥ 1 steps and B ≥ 1 sequences$",
     lambda: F.rnn_forward(np.zeros((0, 2, 4)), None, W_IH, W_HH)),
    ("F x ndim", ValueError, r"^x must be 3-D, got shape \(3, 2\) \(2-D\)$",
     lambda: F.rnn_forward(X[:, :, 0], None, W_IH, W_HH)),
    ("F weight_ih rows", ValueError,
     r"^weight_ih has 5 rows: a LSTM needs G·H rows with G=4, H ≥ 1$",
     lambda: F.lstm_forward(X, None, None, W_IH, W_HH)),
    ("F weight_ih cols", ValueError,
     r"^weight_ih has shape \(5, 3\): expected \(5, 4\) \(x has F=4 features\)$",
     lambda: F.rnn_forward(X, None, W_IH[:, :3], W_HH)),
    ("F weight dtype mix", TypeError,
     r"^weight_hh has dtype float32 but this computation is float64: "
     r"convert it with \.astype\(np\.float64\)$",
     lambda: F.rnn_forward(X, None, W_IH, W_HH.astype(np.float32))),
    ("F one bias", ValueError, r"^pass both bias_ih and bias_hh, or neither$",
     lambda: F.rnn_forward(X, None, W_IH, W_HH, np.zeros(5))),
    ("F bias shape", ValueError, r"^bias_hh has shape \(4,\): expected \(5,\)$",
     lambda: F.rnn_forward(X, None, W_IH, W_HH, np.zeros(5), np.zeros(4))),
    ("F c0 nonfinite", ValueError,
     r"^c0 contains a non-finite value \(-inf\) at index \(0, 1\): clean the input",
     lambda: F.lstm_forward(X, None, np.where(np.eye(2, 5, 1) > 0, -np.inf, 0), L_IH, L_HH)),
    ("F mask dtype", TypeError, r"^mask must hold 0/1 values, got dtype <U1$",
     lambda: F.rnn_forward(X, None, W_IH, W_HH, mask=np.full((3, 2), "1"))),
    ("F lengths shape", ValueError,
     r"^lengths has shape \(2, 1\) but the batch has B=2: expected \(2,\)$",
     lambda: F.rnn_forward(X, None, W_IH, W_HH, lengths=[[1], [2]])),
    ("F lengths float", TypeError, r"^lengths must hold integers, got dtype float64$",
     lambda: F.rnn_forward(X, None, W_IH, W_HH, lengths=[1.5, 2])),
    ("F dout dtype", TypeError,
     r"^dout has dtype float32 but this computation is float64: convert it with",
     lambda: F.rnn_backward(np.zeros((3, 2, 5), np.float32), None, RNN_CACHE)),
    ("F dc_n shape", ValueError,
     r"^dc_n has shape \(5, 2\): expected \(2, 5\) \(it must match the final state\)$",
     lambda: F.lstm_backward(None, (None, np.zeros((5, 2))), LSTM_CACHE)),
    # --- layers -------------------------------------------------------------------------
    ("layer input_size bool", TypeError, r"^input_size must be an integer >= 1, got True$",
     lambda: nprnn.GRU(True, 3)),
    ("layer dtype junk", TypeError,
     r"^dtype must be np\.float32 or np\.float64, got 'nonsense'$",
     lambda: lstm32(dtype="nonsense")),
    ("layer dropout nan", ValueError, r"^dropout must lie in \[0\.0, 1\.0\), got nan$",
     lambda: nprnn.LSTM(3, 4, 2, dropout=float("nan"))),
    ("layer dropout str", TypeError, r"^dropout must be a real number, got '0\.1'$",
     lambda: lstm32(dropout="0.1")),
    ("layer x 2-D batch_first", ValueError,
     r"^x must be 3-D \(B, T, input_size\), got shape \(2, 3\) \(2-D\)$",
     lambda: lstm32(batch_first=True)(np.zeros((2, 3), np.float32))),
    ("layer c0 dtype", TypeError,
     r"^c0 must hold real numbers, got dtype object$",
     lambda: lstm32()(np.zeros((2, 1, 3), np.float32), (None, np.array([[[None] * 4]])))),
    ("layer dstate not pair", TypeError,
     r"^dstate must be a pair \(dh_n, dc_n\) or None, got ndarray$",
     lambda: called(lstm32(), np.zeros((2, 1, 3), np.float32)).backward(
         None, np.zeros((1, 1, 4), np.float32))),
    ("load_state_dict not mapping", TypeError,
     r"^load_state_dict needs a mapping of name -> array, got \[1\]$",
     lambda: lstm32().load_state_dict([1])),
    ("load_state_dict complex", TypeError,
     r"^load_state_dict: weight_ih_l0 must hold real numbers, got complex128$",
     lambda: lstm32().load_state_dict(
         {k: np.zeros(v.shape, complex) for k, v in lstm32().params.items()})),
    ("load_state_dict f64 beyond f32", ValueError,
     r"^load_state_dict: weight_ih_l0 contains a non-finite value \(inf\) at index \(0, 0\)",
     lambda: lstm32().load_state_dict(
         {k: np.full(v.shape, 1e300) for k, v in lstm32().params.items()})),
    # --- dense, loss ----------------------------------------------------------------------
    ("Embedding padding_idx type", TypeError,
     r"^padding_idx must be an int or None, got 1\.0$",
     lambda: nprnn.Embedding(5, 2, padding_idx=1.0)),
    ("Embedding ids None", TypeError, r"^ids must be an array of integer ids, got None$",
     lambda: nprnn.Embedding(5, 2)(None)),
    ("loss logits scalar", ValueError,
     r"^logits must have at least 1 dimension \(\.\.\., V\), got a scalar$",
     lambda: nprnn.softmax_cross_entropy(1.0, 0)),
    ("loss logits complex", TypeError, r"^logits must hold real numbers, got dtype complex128$",
     lambda: nprnn.softmax_cross_entropy(np.zeros((2, 3), complex), [0, 1])),
    ("loss mask dtype", TypeError, r"^mask must hold 0/1 values, got dtype object$",
     lambda: nprnn.softmax_cross_entropy(np.zeros((2, 3)), [0, 1], mask=np.array([1, None]))),
    # --- optimizers, clipping, schedules ---------------------------------------------------
    ("opt params empty", TypeError, r"^params must be a non-empty dict name -> np\.ndarray$",
     lambda: optim.Adam({})),
    ("opt param name", TypeError, r"^parameter names must be strings, got 0$",
     lambda: optim.SGD({0: np.ones(2)}, lr=0.1)),
    ("opt param read-only", ValueError,
     r"^parameter 'a' is read-only: the optimizer updates it in place$",
     lambda: optim.Adam({"a": np.broadcast_to(np.ones(1), (3,))})),
    ("opt lr str", TypeError, r"^lr must be a real number, got '1'$",
     lambda: optim.Adam(params64(), lr="1")),
    ("step grads type", TypeError, r"^grads must be a dict name -> np\.ndarray, got list$",
     lambda: optim.Adam(params64()).step([np.ones((2, 3))])),
    ("step grad not array", ValueError, r"^grad 'b' has shape list: expected \(3,\)$",
     lambda: optim.SGD(params64(), lr=0.1).step({"w": np.ones((2, 3)), "b": [0, 0, 0]})),
    ("load_state step", ValueError, r"^optimizer state has a bad step count: -1$",
     lambda: optim.Adam(params64()).load_state({}, {"optimizer": "adam", "step": -1})),
    ("load_state lacks", ValueError, r"^optimizer state lacks exp_avg\.w$",
     lambda: optim.Adam(params64()).load_state({}, {"optimizer": "adam", "step": 2})),
    ("load_state arrays type", TypeError, r"^optimizer state arrays must be a dict$",
     lambda: optim.Adam(params64()).load_state([], {"optimizer": "adam", "step": 0})),
    ("lr setter", ValueError, r"^lr must lie in \[0, inf\], got nan$",
     lambda: setattr(optim.Adam(params64()), "lr", float("nan"))),
    ("schedule min_lr_ratio", ValueError, r"^min_lr_ratio must lie in \[0, 1\], got 1\.5$",
     lambda: optim.LRSchedule(base_lr=0.1, total_steps=10, min_lr_ratio=1.5)),
    ("schedule lr_at", TypeError, r"^step must be an integer >= 0, got 1\.0$",
     lambda: optim.LRSchedule(base_lr=0.1, total_steps=10).lr_at(1.0)),
    # --- gradcheck ------------------------------------------------------------------------
    ("gradcheck eps", TypeError, r"^eps must be a real number, got '1e-6'$",
     lambda: gradcheck(lambda p: 0.0, {"a": np.ones(2)}, {"a": np.ones(2)}, eps="1e-6")),
    # --- text -------------------------------------------------------------------------------
    ("encode type", TypeError, r"^text must be a str, got bytes$",
     lambda: VOCAB.encode(b"ab")),
    ("decode dtype", TypeError, r"^ids must be integers, got dtype float64$",
     lambda: VOCAB.decode([1.0])),
    ("Vocab entry", ValueError, r"^vocabulary entries must be single characters, got 'ab'$",
     lambda: Vocab(["ab"], lines_mode=True)),
    ("Vocab distinct", ValueError, r"^vocabulary characters must be distinct$",
     lambda: Vocab(["a", "a"], lines_mode=False)),
    ("Vocab empty", DataError, r"^the vocabulary is empty — the data holds no characters$",
     lambda: Vocab([], lines_mode=False)),
    ("Vocab.build texts", TypeError, r"^texts must be strings, got int$",
     lambda: Vocab.build([1], lines_mode=True)),
    ("from_dict keys", DataError,
     r"^vocabulary must have keys tokens, lines_mode, got \['chars'\] — the run's config\.json "
     r"is damaged — retrain or restore it$",
     lambda: Vocab.from_dict({"chars": ["a"]})),
    ("from_dict lines_mode", DataError,
     r"^vocabulary lines_mode must be true/false, got 1 — the run's config\.json is damaged",
     lambda: Vocab.from_dict({"chars": ["a"], "lines_mode": 1})),
    ("from_dict chars", DataError, r"^vocabulary chars must be a list, got str — ",
     lambda: Vocab.from_dict({"chars": "ab", "lines_mode": True})),
    ("LinesBatcher lines", TypeError, r"^lines must be strings, got int$",
     lambda: LinesBatcher(["a", 1], VOCAB, batch_size=2)),
    ("LinesBatcher empty", DataError,
     r"^no lines to train on — pass a file with at least one line$",
     lambda: LinesBatcher([], VOCAB, batch_size=2)),
    ("LinesBatcher batch_size", TypeError, r"^batch_size must be an integer >= 1, got 1\.5$",
     lambda: LinesBatcher(["a"], VOCAB, batch_size=1.5)),
    ("lines state type", DataError, r"^lines batcher state must be a dict, got list$",
     lambda: LinesBatcher(["a"], VOCAB, batch_size=1).load_state_dict([])),
    ("stream ids", TypeError, r"^ids must be a 1-D integer array, got float64 \(4,\)$",
     lambda: StreamBatcher(np.zeros(4), batch_size=1, seq_len=2)),
    ("eval stream short", DataError,
     r"^the evaluation text needs at least 2 characters — pass more text$",
     lambda: list(iter_eval_stream(np.array([1]), 2, 3))),
    ("split lines", DataError,
     r"^cannot hold out validation data from 1 line\(s\) — pass more lines or --val-data$",
     lambda: split_train_val(["a"], val_fraction=0.1)),
    ("split text", DataError,
     r"^cannot hold out validation text from 3 characters — pass more text or --val-data$",
     lambda: split_text("abc", val_fraction=0.1)),
    # --- checkpoint ---------------------------------------------------------------------
    ("atomic bytes", TypeError, r"^data must be bytes, got str$",
     lambda: atomic_write_bytes("/tmp/never-written", "text")),
    ("arrays names", TypeError, r"^array names must be strings, got 1$",
     lambda: arrays_to_bytes({1: np.zeros(2)})),
    ("arrays dtype", TypeError, r"^array 'a' has unsupported dtype complex128$",
     lambda: arrays_to_bytes({"a": np.zeros(2, complex)})),
    ("arrays metadata", TypeError, r"^metadata must map strings to strings$",
     lambda: arrays_to_bytes({"a": np.zeros(2)}, {"step": 1})),
    ("save step", ValueError, r"^step must be an integer >= 0, got True$",
     lambda: save_checkpoint(RunDir("/tmp/never"), step=True, model_arrays={},
                             trainer_arrays={}, trainer_state={}, config={})),
    ("save state type", TypeError, r"^trainer_state and config must be dicts$",
     lambda: save_checkpoint(RunDir("/tmp/never"), step=1, model_arrays={},
                             trainer_arrays={}, trainer_state=[], config={})),
    ("save not JSON", TypeError, r"^cannot store a _Odd in JSON$",
     lambda: save_checkpoint(RunDir("/tmp/never"), step=1, model_arrays={},
                             trainer_arrays={}, trainer_state={"x": _Odd()}, config={})),
    ("save_rng type", TypeError, r"^rng must be a np\.random\.Generator, got int$",
     lambda: save_rng(3)),
    # --- classic (paths the classic tests do not pin) ------------------------------------
    ("classic Waa square", ValueError,
     r"^parameters\['Waa'\] has shape \(4, 3\): expected \(4, 4\) \(it must be square",
     lambda: classic.rnnCell_forward(np.zeros((2, 1)), np.zeros((4, 1)), {
         "Wax": np.zeros((4, 2)), "Waa": np.zeros((4, 3)), "Ba": np.zeros((4, 1)),
         "Wya": np.zeros((2, 4)), "By": np.zeros((2, 1))})),
    ("classic caches type", TypeError,
     r"^caches must be the non-empty list \(at, a_prev, xt, parameters, mask_t\) "
     r"rnn_forward returned$",
     lambda: classic.rnn_backward(np.ones((2, 1, 1)) / 2, np.ones((2, 1, 1)) / 2, None)),
    ("classic dz_t", ValueError, r"^dz_t has shape \(3, 1\): expected \(2, 1\)$",
     lambda: classic.rnnCell_backward(np.zeros((4, 1)), np.zeros((3, 1)), classic.rnnCell_forward(
         np.zeros((2, 1)), np.zeros((4, 1)), {
             "Wax": np.zeros((4, 2)), "Waa": np.zeros((4, 4)), "Ba": np.zeros((4, 1)),
             "Wya": np.zeros((2, 4)), "By": np.zeros((2, 1))})[2])),
    # --- CharLM -------------------------------------------------------------------------
    ("CharLM vocab_size", ValueError, r"^vocab_size must be an integer >= 2, got 1$",
     lambda: CharLM(1)),
    ("CharLM model", ValueError,
     r"^model must be one of 'lstm', 'gru', 'rnn', 'indrnn', got 'LSTM'$",
     lambda: CharLM(5, model="LSTM")),
    ("CharLM from_config", ValueError, r"^model config lacks hidden, dtype$",
     lambda: CharLM.from_config({"vocab_size": 5, "model": "gru", "layers": 1, "dropout": 0,
                                 "embedding_dim": 3})),
    ("CharLM inputs", ValueError, r"^inputs must hold ids in \[0, 5\), got 7 at index \(0, 1\)$",
     lambda: CharLM(5, hidden=3).logits(np.array([[1, 7]]))),
    ("CharLM inputs ndim", ValueError, r"^inputs must be 2-D, got shape \(3,\) \(1-D\)$",
     lambda: CharLM(5, hidden=3).logits(np.array([1, 2, 3]))),
    ("CharLM sample mode", ValueError, r"^mode must be one of 'lines', 'stream', got 'words'$",
     lambda: CharLM(len(VOCAB), hidden=3).sample(VOCAB, mode="words")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fn", "exc", "pattern"), [pytest.param(fn, exc, pat, id=name) for name, exc, pat, fn in CASES]
)
def test_error_message(fn, exc, pattern):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(exc, match=pattern) as info:
            fn()
    assert type(info.value) is exc or issubclass(type(info.value), exc)
    assert "\n" not in str(info.value)


def test_catalogue_rows_are_distinct():
    names = [c[0] for c in CASES]
    assert len(set(names)) == len(names)
    assert len({c[2] for c in CASES}) == len(CASES)  # every row pins its own message


def test_read_text_errors_name_the_flag(tmp_path):
    """read_text: directory, NUL bytes, whitespace-only; the flag is named in each."""
    (tmp_path / "nul.txt").write_bytes(b"ab\x00cd")
    (tmp_path / "blank.txt").write_text(" \n\t\n")
    with pytest.raises(DataError, match=r"it is a directory — pass an existing UTF-8 text file "
                       r"with --val-data$"):  # fmt: skip
        read_text(tmp_path, flag="--val-data")
    with pytest.raises(DataError, match=r"contains NUL bytes \(a binary file\?\) — pass a UTF-8 "
                       r"text file with --data$"):  # fmt: skip
        read_text(tmp_path / "nul.txt")
    with pytest.raises(DataError, match=r"is empty \(no text\) — pass a file that holds text "
                       r"with --data$"):  # fmt: skip
        read_text(tmp_path / "blank.txt")


# ----------------------------------------------------------------------------- pinned bugs

NAMES = ["anna", "bob", "cleo", "dave", "eve", "fay", "gus", "hal", "ida", "jo", "kim", "lea"]


def xbug(bug_id: str, what: str):
    return pytest.mark.xfail(strict=True, reason=f"bug {bug_id}: {what}")


@contextlib.contextmanager
def strict():
    """Warnings are errors; NumPy overflow/invalid/divide raise."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            yield


class Deadline(BaseException):
    """Not an Exception: nothing in the package may swallow it (cli.main catches OSError,
    hence TimeoutError, and KeyboardInterrupt)."""


@contextlib.contextmanager
def deadline(seconds: int):
    def boom(signum, frame):
        raise Deadline(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_cli(*argv) -> tuple[int, str, str]:
    """``cli.main`` in-process; any exception it lets through propagates (a bug)."""
    from nprnn.app import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code, err, *needles):
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nprnn: error: ") and " — " in lines[0], err
    for n in needles:
        assert re.search(n, lines[0]), (n, lines[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny lines-mode LSTM run and its corpus."""
    base = tmp_path_factory.mktemp("trained")
    corpus = base / "names.txt"
    corpus.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    run = base / "run"
    code, _, err = run_cli("train", "--data", corpus, "--out", run, "--steps", 4, "--hidden", 4,
                           "--batch-size", 4, "--eval-every", 2, "--warmup", 1, "--samples", 0,
                           "--quiet")  # fmt: skip
    assert code == 0, err
    return run, corpus


def weights_only_copy(run: Path, dest: Path, *, config=None, scale_head=None) -> Path:
    """``config.json`` + ``model.safetensors`` only (no trainer.json, so no checksum)."""
    import safetensors.numpy as stn

    dest.mkdir()
    cfg = json.loads((run / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps(config(cfg) if config else cfg))
    w = stn.load_file(str(run / "model.safetensors"))
    if scale_head is not None:
        w["head.weight"] = w["head.weight"] * np.float32(scale_head)
    stn.save_file(w, str(dest / "model.safetensors"))
    return dest


def resigned(run: Path, mutate) -> None:
    """Apply ``mutate`` to trainer.json and recompute its checksum: a record that is
    consistent but says something wrong (a foreign or older writer, a hand edit)."""
    rec = read_json(run / "trainer.json")
    rec.pop("checksum")
    mutate(rec)
    rec["checksum"] = sha256_hex(canonical_json(rec).encode("utf-8"))
    (run / "trainer.json").write_text(canonical_json(rec))


def test_bug_F2_backward_checks_its_cache():
    _, _, gru_cache = F.gru_forward(X, None, L_IH[:15], L_HH[:15])
    for back, cache in [
        (F.rnn_backward, None),
        (F.gru_backward, "cache"),
        (F.rnn_backward, LSTM_CACHE),
        (F.lstm_backward, RNN_CACHE),
        (F.gru_backward, LSTM_CACHE),
        (F.lstm_backward, gru_cache),
    ]:
        with pytest.raises(TypeError, match=r"\bcache\b"):
            back(None, None, cache)


def test_bug_F3_lstm_backward_dstate_must_be_a_pair():
    for dstate in (3, (None, None, None), np.zeros((3, 2, 5))):
        with pytest.raises(TypeError, match=r"dstate must be a pair \(dh_n, dc_n\) or None"):
            F.lstm_backward(None, dstate, LSTM_CACHE)


def test_bug_F4_activations_validate_x():
    funcs = (F.sigmoid, F.softmax, F.log_softmax, classic.sigmoid, classic.softmax)
    for f in funcs:
        for bad in (None, np.array([1 + 1j, 2]), np.array(["a", "b"]), np.array([None, 1])):
            with strict(), pytest.raises(TypeError, match=r"\bx\b"):
                f(bad)
    for f in (F.softmax, F.log_softmax, classic.softmax):
        for x in (np.array([np.inf, 0.0]), np.zeros((0, 3)), np.array([True, False])):
            try:
                with strict():
                    r = f(x)
            except ValueError as e:
                assert re.search(r"\bx\b", str(e)), str(e)
            else:
                assert r.shape == x.shape and np.isfinite(r[np.isfinite(x)]).all()


def test_bug_F5_activations_do_not_raise_on_underflow():
    x = np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            s, sm, ls = F.sigmoid(x), F.softmax(x), F.log_softmax(x)
        huge = np.array([3e38, -3e38], np.float32)
        assert F.softmax(huge).tolist() == [1.0, 0.0]
    assert s[0, 0] == 0 and s[0, -1] == 1 and sm[0, -1] == 1 and ls[0, -1] == 0


def test_bug_LS1_loss_at_the_float32_extremes():
    z = np.array([[3e38, -3e38, 0.0]], np.float32)
    with strict():
        loss, dz = nprnn.softmax_cross_entropy(z, np.array([1]))
    assert math.isfinite(loss) and loss == pytest.approx(6e38, rel=1e-6)
    assert np.isfinite(dz).all()


RAGGED = [[1.0], [1.0, 2.0]]


def test_bug_V1_ragged_input_names_the_argument():
    layer = lstm32()
    sd = {**layer.state_dict(), "weight_ih_l0": RAGGED}
    cases = [
        ("x", lambda: F.rnn_forward([RAGGED], None, W_IH, W_HH)),
        ("mask", lambda: F.rnn_forward(X, None, W_IH, W_HH, mask=RAGGED)),
        ("mask", lambda: nprnn.softmax_cross_entropy(np.zeros((2, 3)), [0, 1], mask=RAGGED)),
        ("ids", lambda: nprnn.Embedding(5, 2)([[1], [1, 2]])),
        ("weight_ih_l0", lambda: layer.load_state_dict(sd)),
    ]
    for name, fn in cases:
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            fn()


def test_bug_V2_huge_float_lengths():
    with strict(), pytest.raises(ValueError, match=r"^lengths must lie in \[0, T=3\]") as e:
        F.rnn_forward(X, None, W_IH, W_HH, lengths=[1e300, 1.0])
    assert "-9223372036854775808" not in str(e.value)


def test_bug_V3_uint64_ids_are_reported_as_they_are():
    big = np.array([2**64 - 1], np.uint64)
    with pytest.raises(ValueError, match="18446744073709551615"):
        nprnn.Embedding(5, 2)(big)
    with pytest.raises(ValueError, match="18446744073709551615"):
        VOCAB.decode(big)


def test_bug_V4_negative_seed_names_rng():
    for make in (lambda: nprnn.LSTM(2, 3, rng=-1), lambda: nprnn.Linear(2, 3, rng=-5),
                 lambda: CharLM(5, rng=-1)):  # fmt: skip
        with pytest.raises(ValueError, match=r"\brng\b"):
            make()


def test_bug_O1_step_refuses_non_finite_grads():
    for name in optim.OPTIMIZERS:
        for bad in (np.nan, np.inf):
            params = params64()
            opt = optim.make_optimizer(name, params, lr=0.1)
            grads = {"w": np.full((2, 3), bad), "b": np.zeros(3)}
            with strict(), pytest.raises(ValueError, match=r"'w'.*(non-finite|nan|inf)"):
                opt.step(grads)
            np.testing.assert_array_equal(params["w"], np.ones((2, 3)))  # untouched


def test_bug_O2_clip_grad_norm_validates_grads():
    for grads in (
        [np.ones(2)],
        None,
        {"a": np.full(2, 10)},
        {"a": [10.0, 10.0]},
        {"a": np.ones(2, complex)},
        {"a": np.broadcast_to(10.0, (3,))},
    ):
        with strict(), pytest.raises((TypeError, ValueError), match=r"\bgrads\b|'a'"):
            optim.clip_grad_norm(grads, 1.0)


def test_bug_O3_load_state_dict_needs_a_dict():
    with pytest.raises(TypeError, match="state"):
        optim.Adam(params64()).load_state_dict([])


def test_bug_T1_lines_batcher_checks_vocab():
    with pytest.raises(TypeError, match=r"\bvocab\b"):
        LinesBatcher(["a"], None, batch_size=1)


def test_bug_T2_none_sequences_are_named():
    from nprnn.app.batches import iter_eval_batches

    for name, fn in [
        ("chars", lambda: Vocab(None, lines_mode=True)),
        ("texts", lambda: Vocab.build(None, lines_mode=True)),
        ("lines", lambda: list(iter_eval_batches(None, VOCAB, 2))),
        ("items", lambda: split_train_val(None, val_fraction=0.5)),
        ("text", lambda: split_text(None, val_fraction=0.5)),
    ]:
        with pytest.raises(TypeError, match=rf"\b{name}\b"):
            fn()


def test_bug_G1_gradcheck_validates_its_inputs():
    def f(p):
        return 0.0

    ok = {"a": np.ones(2)}
    for name, fn in [
        ("params", lambda: gradcheck(f, {"a": np.ones(2, complex)}, ok)),
        ("grads", lambda: gradcheck(f, ok, {"a": np.array(["x", "y"])})),
        ("params", lambda: gradcheck(f, [np.ones(2)], {})),
        ("rng", lambda: gradcheck(f, ok, ok, max_entries=1, rng="x")),
    ]:
        with strict(), pytest.raises(TypeError, match=rf"\b{name}\b"):
            fn()


def test_bug_C1_compute_loss_on_empty_predictions():
    for shape in ((2, 0, 3), (2, 3, 0)):
        try:
            with strict():
                loss = classic.compute_loss(np.zeros(shape), np.zeros(shape))
        except ValueError as e:
            assert "y_pred" in str(e)
        else:
            assert loss == 0.0


def test_bug_C2_pad_sequences_padding_value():
    seqs = [np.ones((2, 3), np.uint8)]
    for pv in (None, "x", -1, 300):
        try:
            with strict():
                padded, _ = classic.pad_sequences(seqs, 4, pv)
        except (TypeError, ValueError) as e:
            assert "padding_value" in str(e), str(e)
        else:  # promoted to a dtype that holds it
            assert pv is not None and not isinstance(pv, str) and padded[0, 0, 3] == pv
    with pytest.raises(TypeError, match="sequences"):
        classic.pad_sequences([np.array([["a", "b"]])])


def _classic_rnn(n_y=2):
    rng = np.random.default_rng(3)
    n_x, n_a, m, Tx = 3, 4, 2, 5
    P = {"Wax": rng.normal(size=(n_a, n_x)), "Waa": rng.normal(size=(n_a, n_a)) * 0.3,
         "Ba": rng.normal(size=(n_a, 1)), "Wya": rng.normal(size=(n_y, n_a)),
         "By": rng.normal(size=(n_y, 1))}  # fmt: skip
    x = rng.normal(size=(n_x, m, Tx))
    return x, np.zeros((n_a, m)), P


def _classic_lstm(n_y=2):
    rng = np.random.default_rng(4)
    n_x, n_a, m = 3, 4, 2
    P = {k: rng.normal(size=(n_a, n_a + n_x)) * 0.3 for k in ("Wf", "Wi", "Wc", "Wo")}
    P.update({k: rng.normal(size=(n_a, 1)) for k in ("bf", "bi", "bc", "bo")})
    P["Wy"], P["by"] = rng.normal(size=(n_y, n_a)), rng.normal(size=(n_y, 1))
    x = rng.normal(size=(n_x, m, 5))
    return x, np.zeros((n_a, m)), P


def test_bug_C3_backward_checks_n_y():
    y3 = np.full((3, 2, 5), 1 / 3)
    x, a0, P = _classic_rnn()
    caches = classic.rnn_forward(x, a0, P)[2]
    for c in (caches, list(caches)):
        with pytest.raises(ValueError, match=r"\by_pred\b"):
            classic.rnn_backward(y3, y3, c)
    x, a0, P = _classic_lstm()
    caches = classic.lstm_forward(x, a0, a0, P)[3]
    for c in (caches, list(caches)):
        with pytest.raises(ValueError, match=r"\by_pred\b"):
            classic.lstm_backward(y3, y3, c)


def test_bug_C4_cell_caches_are_validated():
    x, a0, P = _classic_rnn()
    _, y, caches = classic.rnn_forward(x, a0, P)
    bad = [(c[0], c[1], None, c[3], c[4]) for c in caches]
    with pytest.raises((TypeError, ValueError), match=r"\b(cache|caches|xt)\b"):
        classic.rnn_backward(y, y, bad)
    x, a0, P = _classic_lstm()
    c0 = classic.lstm_forward(x, a0, a0, P)[3][0]
    da = np.zeros((4, 2))
    for i, junk in ((6, None), (4, None), (1, np.zeros((1, 1, 1)))):
        cache = c0[:i] + (junk,) + c0[i + 1 :]
        with pytest.raises((TypeError, ValueError), match=r"\b(cache|gates|xt|c_next)\b"):
            classic.lstmCell_backward(da, da, cache)


def test_bug_L1_tiny_temperature_is_greedy():
    lm = CharLM(len(VOCAB), hidden=3, rng=0)
    greedy = lm.sample(VOCAB, n=3, temperature=1e-300, rng=0, max_len=6)
    with strict():
        tiny = lm.sample(VOCAB, n=3, temperature=1e-320, rng=0, max_len=6)
    assert tiny == greedy


def test_bug_CLI1_eval_of_a_very_bad_model(trained, tmp_path):
    run, corpus = trained
    d = weights_only_copy(run, tmp_path / "bad", scale_head=1e5)
    code, out, err = run_cli("eval", d, "--data", corpus)
    assert code == 0, err

    def no_constants(c):
        raise AssertionError(f"not JSON: {c}")

    res = json.loads(out, parse_constant=no_constants)
    assert res["loss"] > 709.8


def test_bug_CLI2_huge_config_is_refused_fast(trained, tmp_path):
    run, _ = trained
    for key, value in (("hidden", 10**6), ("layers", 10**9)):

        def cfg(c, key=key, value=value):
            c["model"][key] = value
            return c

        d = weights_only_copy(run, tmp_path / key, config=cfg)
        with deadline(3):
            code, _, err = run_cli("sample", d, "--n", 1)
        assert_one_line_error(code, err, "config")


def test_bug_CLI3_eval_without_train_section(trained, tmp_path):
    run, corpus = trained

    def drop(c):
        del c["train"]
        return c

    d = weights_only_copy(run, tmp_path / "w", config=drop)
    code, out, err = run_cli("eval", d, "--data", corpus)
    if code == 0:
        assert math.isfinite(json.loads(out)["loss"])
    else:
        assert_one_line_error(code, err)


def test_bug_CLI4_resume_validates_the_record(trained, tmp_path):
    import shutil

    run, _ = trained
    mutations = {
        "no data": lambda r: r["config"].pop("data"),
        "no train": lambda r: r["config"].pop("train"),
        "rng": lambda r: r["state"]["model_rng"].update(uinteger=-1),
        "bad_evals": lambda r: r["state"]["record"].update(bad_evals="x"),
    }
    for name, mutate in mutations.items():
        d = tmp_path / name.replace(" ", "_")
        shutil.copytree(run, d)
        resigned(d, mutate)
        code, _, err = run_cli("train", "--out", d, "--resume", "--quiet", "--samples", 0)
        assert_one_line_error(code, err, r"trainer\.json|checkpoint|damaged")
        assert "check the command's options" not in err, err


def test_bug_CK1_record_entries_are_type_checked(tmp_path):
    from nprnn.app.runs import load_checkpoint, load_model

    def fresh(name):
        run = RunDir(tmp_path / name)
        w = {"w": np.ones(2)}
        save_checkpoint(run, step=1, model_arrays=w, trainer_arrays={}, trainer_state={},
                        config={"c": 1}, best_arrays=w)  # fmt: skip
        return run

    run = fresh("file")
    resigned(run.path, lambda r: r["model"].update(file=123))
    with pytest.raises(CheckpointError, match="trainer.json"):
        load_checkpoint(run)
    run = fresh("best")
    resigned(run.path, lambda r: r.pop("best"))
    assert load_best(run) is None
    assert load_model(run, best=True)[1]["w"].tolist() == [1.0, 1.0]


def test_bug_L2_charlm_errors_use_the_full_name():
    lm = CharLM(5, hidden=3, rng=0)
    sd = lm.state_dict()
    sd["embedding.weight"] = np.zeros((5, 4))
    with pytest.raises(ValueError, match=r"embedding\.weight has shape \(5, 4\)"):
        lm.load_state_dict(sd)


def test_bug_L3_charlm_load_state_dict_is_all_or_nothing():
    lm = CharLM(5, hidden=3, rng=0)
    before = lm.state_dict()
    sd = {k: v + 1 for k, v in before.items()}
    sd["head.bias"] = np.zeros(7)
    with pytest.raises(ValueError, match="bias"):
        lm.load_state_dict(sd)
    after = lm.state_dict()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
