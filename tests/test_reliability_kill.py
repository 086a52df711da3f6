"""Kill/resume and checkpoint-mutation reliability of ``nprnn train`` run directories.

1. **SIGKILL at random moments.** ``python -m nprnn train`` runs in a subprocess on a tiny
   corpus (a tiny LSTM, 150 steps, an evaluation + checkpoint every 10 steps)
   and is killed with SIGKILL at seeded random moments (at start-up, while the first
   checkpoint is written, 0-30 ms after a random checkpoint). After each kill the run
   directory must load (``nprnn sample`` / ``nprnn eval`` exit 0), or, when the kill
   came before the first checkpoint, both must fail with the documented one-line error
   (exit 2). Then ``--resume`` (or a fresh start when there was nothing to resume) runs
   to the end — in some trials it is killed again and resumed once more — and the final
   weights (``model.safetensors``, ``best.safetensors``) must equal those of an
   uninterrupted run bit for bit, and the evaluation log the same values.
2. **Unwritable ``--out``** (a path under a regular file — tests run as root, so chmod
   would not stop writes) is refused with exit 2 and one line before training starts.
3. **Checkpoint mutation fuzz over the loader** (``nprnn.app.load.read_run``, what ``sample``,
   ``eval`` and ``--resume`` use): thousands of damaged run directories — flipped or
   truncated bytes, renamed keys / wrong dtypes / wrong shapes in safetensors headers,
   edited JSON (wrong types, missing keys, foreign vocabulary, another architecture),
   with and without a re-computed trainer.json checksum. Every outcome is a correct load
   (the model holds exactly the file's weights) or a CheckpointError/DataError with a
   one-line message; never another exception. A sample of them also goes through
   ``nprnn train --resume``, which must end with exit 0 or 2 and one line.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import nprnn
from nprnn.app import cli, load
from nprnn.app.errors import CheckpointError, DataError, UsageError
from nprnn.app.files import canonical_json, sha256_hex
from nprnn.app.runs import RunDir
from nprnn.app.text import Vocab

safetensors_numpy = pytest.importorskip("safetensors.numpy")

SRC = str(Path(nprnn.__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
NAMES = (
    "anna bob cleo dave eve fay gus hal ida jo kim lea max ned oda pia quin ray sam tom uma "
    "vic wes xia yan zoe abel bea cal dina"
).split()
STEPS = 150
TRAIN = ["--steps", STEPS, "--hidden", 8, "--batch-size", 4, "--eval-every", 10,
         "--warmup", 5, "--patience", 0, "--samples", 0, "--threads", 1]  # fmt: skip
NOT_YET = r"not a run directory|no checkpoint"  # the documented "nothing saved yet" errors


def report(request, line: str) -> None:
    """Write a line to the terminal (past pytest's capture)."""
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is not None:
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            tr.write_line(line)


def nprnn_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "nprnn", *(str(a) for a in args)]


def run_cli(*argv) -> tuple[int, str, str]:
    """``cli.main`` in-process; an exception it lets through propagates (a bug)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_line_error(code, err) -> str:
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nprnn: error: ") and " — " in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


def weights(path: Path) -> dict:
    return safetensors_numpy.load_file(str(path))


def assert_bit_identical(a: dict, b: dict, what: str) -> None:
    assert sorted(a) == sorted(b), what
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, (what, k)
        assert a[k].tobytes() == b[k].tobytes(), f"{what}: {k} differs"


def eval_log(run: Path) -> list:
    """The scheduled evaluations of the log: (step, train_loss, val_loss, best)."""
    recs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
    return [(r["step"], r["train_loss"], r["val_loss"], r["best"]) for r in recs]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("corpus") / "names.txt"
    p.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    return p


# ----------------------------------------------------------------------------- 1. SIGKILL


def check_loadable(run: Path, corpus: Path) -> bool:
    """sample + eval exit 0 (True), or both say "nothing saved yet" with exit 2 (False)."""
    codes = []
    for argv in (["sample", run, "--n", 2, "--seed", 0], ["eval", run, "--data", corpus]):
        code, out, err = run_cli(*argv)
        if code == 0:
            assert out.strip(), argv
            if argv[0] == "eval":
                assert np.isfinite(json.loads(out)["loss"])
        else:
            line = one_line_error(code, err)
            assert any(s in line for s in ("not a run directory", "no checkpoint")), line
        codes.append(code)
    assert codes[0] == codes[1], codes
    return codes[0] == 0


def committed_step(run: Path):
    """The step of the committed checkpoint (trainer.json is replaced atomically), or None."""
    try:
        return json.loads((run / "trainer.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return None


def kill_when(cmd, run: Path, *, step=None, after: float = 0.0) -> bool:
    """Start ``cmd``; once ``run`` holds a checkpoint of ``step`` or later (``step=-1``: once
    the run directory exists; None: at once) wait ``after`` seconds, then SIGKILL it.
    True if it was killed, False if it finished first (it must have succeeded then)."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while step is not None and proc.poll() is None:
            if run.is_dir() if step == -1 else (committed_step(run) or -1) >= step:
                break
            time.sleep(0.002)
        time.sleep(after)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=300)
        err = proc.stderr.read().decode()
    finally:
        proc.stderr.close()
    assert killed or proc.returncode == 0, err
    return killed


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path, corpus, request):
    ref = tmp_path / "ref"
    t0 = time.perf_counter()
    r = subprocess.run(nprnn_cmd("train", "--data", corpus, "--out", ref, "--quiet", *TRAIN),
                       env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
    t_ref = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    ref_w, ref_best = weights(ref / "model.safetensors"), weights(ref / "best.safetensors")
    ref_log = eval_log(ref)
    assert [s for s, *_ in ref_log] == list(range(10, STEPS + 1, 10))

    rng = np.random.default_rng(20240601)
    # (kill once step s is committed, + a random 0-30 ms so the kill lands anywhere in the
    # following steps, evaluation or checkpoint write): before anything exists; while the
    # run directory is new (the step-0 checkpoint); at five random steps, two of which
    # also get their resumed run killed at a later random step
    plans = [(None, 0.05), (-1, float(rng.uniform(0, 0.02)))]
    plans += [(10 * int(s), float(rng.uniform(0, 0.03))) for s in rng.integers(0, STEPS // 10, 5)]
    outcomes = []
    for trial, (step, after) in enumerate(plans):
        run = tmp_path / f"k{trial}"
        cmd = nprnn_cmd("train", "--data", corpus, "--out", run, "--quiet", *TRAIN)
        killed = kill_when(cmd, run, step=step, after=after)
        at = committed_step(run)
        loadable = check_loadable(run, corpus)
        assert loadable == (at is not None), (trial, at)
        when = {None: "at start-up", -1: "as the run directory appeared"}.get(
            step, f"{after * 1e3:.0f} ms after the step-{step} checkpoint"
        )
        story = [f"killed {when} (committed checkpoint: {at})" if killed else "finished first"]
        resume = ["--resume"] if loadable else ["--data", corpus, *TRAIN]
        if trial in (3, 5) and loadable:  # kill the resumed run as well
            later = 10 * int(rng.integers(at // 10 + 1, STEPS // 10))
            cmd = nprnn_cmd("train", "--out", run, "--quiet", *resume)
            again = kill_when(cmd, run, step=later, after=float(rng.uniform(0, 0.03)))
            story.append(f"resume killed after the step-{later} checkpoint (committed "
                         f"{committed_step(run)})"
                         if again else "resume finished first")  # fmt: skip
            assert check_loadable(run, corpus)
        r = subprocess.run(nprnn_cmd("train", "--out", run, "--quiet", *resume),
                           env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert r.returncode == 0, (trial, r.stderr)
        story.append("resumed" if loadable else "restarted (nothing to resume)")
        assert_bit_identical(weights(run / "model.safetensors"), ref_w, f"trial {trial} model")
        assert_bit_identical(weights(run / "best.safetensors"), ref_best, f"trial {trial} best")
        assert eval_log(run) == ref_log, f"trial {trial}: the evaluation log differs"
        assert check_loadable(run, corpus)
        outcomes.append(f"trial {trial}: " + ", ".join(story) + " -> bit-identical")
    report(request, f"kill/resume: {len(plans)} trials (reference run {t_ref:.1f} s)")
    for line in outcomes:
        report(request, "  " + line)


def test_unwritable_out_is_refused_before_training(tmp_path, corpus):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    t0 = time.perf_counter()
    r = subprocess.run(nprnn_cmd("train", "--data", corpus, "--out", blocker / "run", *TRAIN),
                       env=ENV, capture_output=True, text=True, timeout=120)  # fmt: skip
    line = one_line_error(r.returncode, r.stderr)  # no "training: ..." line came first
    assert "--out" in line and str(blocker / "run") in line, line
    assert blocker.read_text() == "x" and r.stdout == ""
    assert time.perf_counter() - t0 < 60


# ----------------------------------------------------------------------------- 3. mutations

LOADER = getattr(load, "read_run", None)
JUNK = [None, True, False, -1, 0, 1, 2, 3.5, "", "x", "float16", "gru", [], {}, [1], {"a": 1},
        float("nan"), float("inf"), 10**6, 10**9]  # fmt: skip


@pytest.fixture
def scratch(tmp_path):
    """A scratch directory in RAM when there is one (/dev/shm): the fuzz rewrites files
    thousands of times and what it tests is the loader's logic, not the disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="nprnn-fuzz-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, corpus) -> Path:
    run = tmp_path_factory.mktemp("src") / "run"
    code, _, err = run_cli("train", "--data", corpus, "--out", run, "--steps", 6, "--hidden", 4,
                           "--batch-size", 4, "--eval-every", 3, "--warmup", 1, "--samples", 0,
                           "--quiet", "--threads", 1)  # fmt: skip
    assert code == 0, err
    return run


def json_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from json_paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            yield prefix + (i,)
            yield from json_paths(v, prefix + (i,))


def mutate_json(obj, rng, paths):
    """A deep copy with one random path deleted or set to a junk value; its description."""
    obj = copy.deepcopy(obj)
    path = paths[rng.integers(len(paths))]
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[path[-1]]
        return obj, path, "deleted"
    value = JUNK[rng.integers(len(JUNK))]
    parent[path[-1]] = value
    return obj, path, repr(value)


def config_variants(cfg, rng):
    """Whole-config edits: foreign vocabulary, another architecture, dtype, dropout."""
    c = copy.deepcopy(cfg)
    v, m = c["vocab"], c["model"]
    kind = rng.integers(8)
    toks, n_sp = v["tokens"], 3 if v["lines_mode"] else 0
    if kind == 0:  # a foreign vocabulary of the same size: undetectable, loads
        v["tokens"] = toks[:n_sp] + [chr(0x400 + i) for i in range(len(toks) - n_sp)]
    elif kind == 1:  # one character more or fewer
        v["tokens"] = toks[:-1] if rng.random() < 0.5 else toks + ["\u2603"]
    elif kind == 2:
        v["lines_mode"] = not v["lines_mode"]
    elif kind == 3:
        m["model"] = ["gru", "rnn"][rng.integers(2)]
    elif kind == 4:
        m["layers"] = int(rng.integers(2, 4))
    elif kind == 5:
        m["hidden"] = m["embedding_dim"] = int(rng.integers(1, 9))
    elif kind == 6:
        m["dtype"] = ["float64", "float16", "int8"][rng.integers(3)]
    else:
        m["dropout"] = float(rng.uniform(-0.5, 1.5))
    return c, ("variant", int(kind))


def header_split(data: bytes):
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def with_header(header: dict, body: bytes) -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + body


def mutate_safetensors(data: bytes, rng) -> tuple[bytes, str]:
    kind = rng.integers(7)
    if kind == 0:  # flip bits anywhere, mostly in the header
        b = bytearray(data)
        hi = 8 + int.from_bytes(data[:8], "little") if rng.random() < 0.7 else len(b)
        for pos in rng.integers(0, hi, size=rng.integers(1, 4)):
            b[pos] ^= 1 << int(rng.integers(8))
        return bytes(b), "flip"
    if kind == 1:
        return data[: rng.integers(0, len(data))], "truncate"
    header, body = header_split(data)
    names = sorted(k for k in header if k != "__metadata__")
    name = names[rng.integers(len(names))]
    if kind == 2:  # rename a tensor
        header[name[:-1] + "Z"] = header.pop(name)
        return with_header(header, body), "rename"
    if kind == 3:  # another dtype with the same or another item size
        header[name]["dtype"] = ["I32", "U32", "F16", "F64", "BF16", "I8", "BOOL", "XX"][
            rng.integers(8)
        ]
        return with_header(header, body), "dtype"
    if kind == 4:  # another shape
        shape = header[name]["shape"]
        header[name]["shape"] = [int(np.prod(shape))] if rng.random() < 0.5 else shape[::-1] + [1]
        return with_header(header, body), "shape"
    if kind == 5:  # offsets off by a little
        a, b = header[name]["data_offsets"]
        header[name]["data_offsets"] = [a, b + int(rng.integers(-8, 9))]
        return with_header(header, body), "offsets"
    header.pop(name)  # a missing tensor
    return with_header(header, body), "drop"


def expected_weights(path: Path, dtype) -> dict:
    """What a correct load must hold: the file's arrays, in the model's dtype."""
    return {k: np.asarray(v).astype(dtype) for k, v in weights(path).items()}


def check_load(d: Path, which: str, *, verify=None, sample=False) -> str:
    """Load with the CLI's loader; return "load" or the error type (asserting the rules)."""
    try:
        loaded = LOADER(RunDir(d), which)
    except (CheckpointError, DataError, UsageError) as e:
        msg = str(e)
        assert msg and "\n" not in msg and " — " in msg, msg
        return type(e).__name__
    model = loaded.model
    assert isinstance(loaded.vocab, Vocab)
    if verify is not None:  # the model holds exactly the file's weights
        want = expected_weights(verify, model.dtype)
        got = model.state_dict()
        assert sorted(got) == sorted(want)
        for k in got:
            assert got[k].tobytes() == want[k].reshape(got[k].shape).tobytes(), k
    if sample:
        vocab = loaded.vocab
        mode = "lines" if vocab.lines_mode else "stream"
        out = model.sample(vocab, n=2, rng=0, max_len=5, mode=mode)
        assert isinstance(out, list | str)
    return "load"


def test_loader_mutation_fuzz(scratch, source_run, request):
    assert LOADER is not None, "nprnn.app.load.read_run (the loader) was renamed: update this test"
    rng = np.random.default_rng(7)
    counts: Counter = Counter()
    cfg = json.loads((source_run / "config.json").read_text())
    model_bytes = (source_run / "model.safetensors").read_bytes()
    cfg_paths = list(json_paths(cfg))

    # A. weights-only run directories (config.json + model.safetensors, no checksum)
    d = scratch / "w"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "model.safetensors").write_bytes(model_bytes)
    dirty = None  # the file the previous case changed (writing files is the slow part)
    for i in range(3000):
        which = ("best", "last")[i % 2]
        if dirty == "config":
            (d / "config.json").write_text(json.dumps(cfg))
        elif dirty == "model":
            (d / "model.safetensors").write_bytes(model_bytes)
        if i % 3 == 0:
            c, what = mutate_json(cfg, rng, cfg_paths)[0], "json"
        elif i % 3 == 1:
            c, what = config_variants(cfg, rng)[0], "variant"
        else:
            st, what = mutate_safetensors(model_bytes, rng)
        if what in ("json", "variant"):
            (d / "config.json").write_text(json.dumps(c))
            dirty = "config"
        else:
            (d / "model.safetensors").write_bytes(st)
            dirty = "model"
        verify = d / "model.safetensors" if dirty == "model" else None
        try:
            outcome = check_load(d, which, verify=verify, sample=verify is None)
        except Exception as e:  # name the case that broke the rule
            raise AssertionError(f"case {i} ({what}): {type(e).__name__}: {e}") from e
        counts[f"weights-only {outcome}"] += 1

    # B. checkpointed run directories: trainer.json re-signed after the edit, or raw bytes
    #    of trainer.json / a checkpoint file changed (the checksums catch those)
    rec0 = json.loads((source_run / "trainer.json").read_text())
    body0 = {k: v for k, v in rec0.items() if k != "checksum"}
    rec_paths = list(json_paths(body0))
    ck = scratch / "ck"
    shutil.copytree(source_run, ck)
    files = {p.name: p.read_bytes() for p in ck.iterdir() if p.is_file()}
    dirty: set = set()
    for i in range(2400):
        for name in dirty:
            (ck / name).write_bytes(files[name])
        dirty = {"trainer.json"}
        which = ("best", "last", "resume")[i % 3]
        kind = i % 4
        if kind == 0:  # a consistent but wrong record
            body, path, what = mutate_json(body0, rng, rec_paths)
        elif kind == 1:  # a consistent config edit (foreign vocab, another architecture)
            body, what = copy.deepcopy(body0), "variant"
            body["config"] = config_variants(body0["config"], rng)[0]
        elif kind == 2:  # a damaged checkpoint array file with a matching checksum
            entry = ("model", "best", "trainer")[rng.integers(3)]
            fname = body0[entry]["file"]
            data, what = mutate_safetensors(files[fname], rng)
            (ck / fname).write_bytes(data)
            dirty.add(fname)
            body = copy.deepcopy(body0)
            body[entry]["sha256"] = sha256_hex(data)
        else:  # raw damage to trainer.json: its own checksum catches it
            b = bytearray(files["trainer.json"])
            for pos in rng.integers(0, len(b), size=rng.integers(1, 4)):
                b[pos] ^= 1 << int(rng.integers(8))
            (ck / "trainer.json").write_bytes(bytes(b))
            body, what = None, "raw"
        if body is not None:
            rec = dict(body, checksum=sha256_hex(canonical_json(body).encode("utf-8")))
            (ck / "trainer.json").write_text(canonical_json(rec))
        try:
            outcome = check_load(ck, which, sample=kind == 1)
        except Exception as e:  # name the case that broke the rule
            raise AssertionError(f"case {i} ({what}, {which}): {type(e).__name__}: {e}") from e
        counts[f"checkpoint {outcome}"] += 1

    total = sum(counts.values())
    assert counts["weights-only load"] > 50 and counts["checkpoint load"] > 20
    assert (
        counts["weights-only CheckpointError"] > 300 and counts["checkpoint CheckpointError"] > 300
    )
    report(request, f"loader mutation fuzz: {total} cases: {dict(sorted(counts.items()))}")


def test_resume_mutation_fuzz(scratch, source_run, request):
    """Damaged-but-consistent checkpoints through ``nprnn train --resume`` (the run is
    finished, so a good load ends at once): exit 0 or 2 with one line, no traceback.
    Every field of ``config`` and ``state`` is fair game (the file entries are CK1's)."""
    rng = np.random.default_rng(11)
    rec0 = json.loads((source_run / "trainer.json").read_text())
    body0 = {k: v for k, v in rec0.items() if k != "checksum"}
    allowed = [p for p in json_paths(body0) if p[0] in ("state", "config")]
    counts: Counter = Counter()
    from nprnn.app import viz

    orig = viz.plot_log
    viz.plot_log = lambda *a, **k: False  # matplotlib is slow and not under test here
    try:
        for i in range(150):
            d = scratch / f"r{i}"
            shutil.copytree(source_run, d)
            if i % 2:
                body, path, what = mutate_json(body0, rng, allowed)
            else:
                body = copy.deepcopy(body0)
                body["config"], what = config_variants(body0["config"], rng)
            rec = dict(body, checksum=sha256_hex(canonical_json(body).encode("utf-8")))
            (d / "trainer.json").write_text(canonical_json(rec))
            code, _, err = run_cli("train", "--out", d, "--resume", "--quiet", "--samples", 0,
                                   "--steps", 6)  # fmt: skip
            if code != 0:
                one_line_error(code, err)
            counts[f"exit {code}"] += 1
            shutil.rmtree(d)
    finally:
        viz.plot_log = orig
    assert counts["exit 2"] > 10
    report(request, f"resume mutation fuzz: {sum(counts.values())} cases: {dict(counts)}")
