"""Atomic files, safetensors round trips, corruption fuzz, crash safety of checkpoints."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("safetensors")

from nprnn.app import files as ck  # noqa: E402
from nprnn.app.errors import CheckpointError  # noqa: E402
from nprnn.app.files import (  # noqa: E402
    atomic_write_bytes,
    atomic_write_json,
    load_arrays,
    load_arrays_with_metadata,
    load_rng,
    read_json,
    save_arrays,
    save_rng,
)
from nprnn.app.runs import RunDir, load_best, load_checkpoint, load_model, save_checkpoint  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")


def arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "weight_ih_l0": rng.standard_normal((8, 3)).astype(np.float32),
        "bias_hh_l0": rng.standard_normal(8),
        "embedding.weight": rng.standard_normal((5, 2)).astype(np.float32)[:, ::-1],  # strided
        "ids": rng.integers(-5, 5, size=(2, 3)),
        "flags": np.array([True, False]),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "scalar": np.array(3.5),
    }


def assert_same(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k])


def listing(path):
    return sorted(os.listdir(path))


# ----------------------------------------------------------------------------- atomic files


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two" and listing(tmp_path) == ["f.bin"]
    atomic_write_json(tmp_path / "j.json", {"b": 1, "a": [1, 2], "c": np.int64(3)})
    text = (tmp_path / "j.json").read_text()
    assert text == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1,\n  "c": 3\n}\n'
    assert p.stat().st_mode & 0o777 == 0o666 & ~ck._UMASK  # not mkstemp's 0o600


def test_atomic_write_failure_keeps_old_content(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    atomic_write_bytes(p, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old" and listing(tmp_path) == ["f.bin"]


# ----------------------------------------------------------------------------- arrays


def test_arrays_round_trip_exact(tmp_path):
    a = arrays()
    save_arrays(tmp_path / "m.safetensors", a, {"step": "7"})
    back, meta = load_arrays_with_metadata(tmp_path / "m.safetensors")
    assert_same(back, a)
    assert meta == {"step": "7"}
    assert all(v.flags.writeable and v.flags.owndata for v in back.values())
    assert listing(tmp_path) == ["m.safetensors"]


def test_arrays_readable_by_torch(tmp_path):
    st_torch = pytest.importorskip("safetensors.torch")
    a = {"weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    save_arrays(tmp_path / "m.safetensors", a)
    t = st_torch.load_file(str(tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(t["weight"].numpy(), a["weight"])


@pytest.mark.parametrize(
    "data,match",
    [
        (None, "file not found"),
        (b"", "shorter than its header"),
        (b"\x05\x00", "shorter than its header"),
        (b"garbage garbage garbage garbage", "cannot load"),
        (b"\x02\x00\x00\x00\x00\x00\x00\x00[]", "header is not a JSON object"),
        (b'\x0f\x00\x00\x00\x00\x00\x00\x00{"a": {"x": 1}}', "cannot load"),
    ],
)
def test_load_arrays_errors(tmp_path, data, match):
    p = tmp_path / "m.safetensors"
    if data is not None:
        p.write_bytes(data)
    with pytest.raises(CheckpointError, match=match) as e:
        load_arrays(p)
    assert "m.safetensors" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="directory|Is a directory"):
        load_arrays(tmp_path)


def test_load_arrays_mutation_fuzz(tmp_path):
    good = ck.arrays_to_bytes(arrays(), {"step": "1"})
    header_end = 8 + int.from_bytes(good[:8], "little")
    rng = np.random.default_rng(0)
    p = tmp_path / "m.safetensors"
    outcomes = {"error": 0, "load": 0}
    for i in range(300):
        data = bytearray(good)
        if i % 3 == 0:
            data = data[: rng.integers(0, len(good))]
        else:
            hi = header_end if i % 3 == 1 else len(data)  # mostly hit the header
            for pos in rng.integers(0, hi, size=rng.integers(1, 4)):
                data[pos] ^= 1 << int(rng.integers(0, 8))
        p.write_bytes(bytes(data))
        try:
            back = load_arrays(p)
        except CheckpointError as e:
            assert "\n" not in str(e)
            outcomes["error"] += 1
            continue
        outcomes["load"] += 1
        assert all(isinstance(v, np.ndarray) for v in back.values())
        if len(data) == len(good) and data[:header_end] == good[:header_end]:
            assert set(back) == set(arrays())  # a data-section flip: same names, shapes
    assert outcomes["error"] > 100 and outcomes["load"] > 0


def test_read_json_errors(tmp_path):
    p = tmp_path / "c.json"
    with pytest.raises(CheckpointError, match="file not found"):
        read_json(p)
    for bad, match in [
        (b"{", "not valid JSON"),
        (b"[1]", "JSON list, not an object"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 100000, "not valid JSON"),
    ]:
        p.write_bytes(bad)
        with pytest.raises(CheckpointError, match=match):
            read_json(p)
    p.write_text('{"a": Infinity}')
    assert read_json(p) == {"a": float("inf")}


# ----------------------------------------------------------------------------- rng


@pytest.mark.parametrize("bg", ["PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"])
def test_rng_round_trip(bg):
    rng = np.random.Generator(getattr(np.random, bg)(123))
    rng.standard_normal(5)
    rng.integers(0, 10, size=3, dtype=np.uint32)  # leaves a buffered 32-bit half
    d = json.loads(json.dumps(save_rng(rng)))
    back = load_rng(d)
    np.testing.assert_array_equal(back.standard_normal(50), rng.standard_normal(50))
    np.testing.assert_array_equal(back.integers(0, 2**31, 7), rng.integers(0, 2**31, 7))


@pytest.mark.parametrize(
    "d",
    [
        None,
        {},
        {"bit_generator": "os.system"},
        {"bit_generator": "PCG64", "state": "x"},
        {"bit_generator": "PCG64", "state": {"state": 1}},
    ],
)
def test_load_rng_rejects_malformed(d):
    with pytest.raises(CheckpointError, match="random-generator state"):
        load_rng(d)


# ----------------------------------------------------------------------------- run dirs


def test_rundir_helpers(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.looks_foreign() and not run.is_run()
    run.check_writable()
    assert run.path.is_dir() and listing(run.path) == []
    run.append_log({"step": 1, "loss": 2.5})
    with open(run.log_path, "ab") as f:
        f.write(b'{"step": 2, "lo')  # a torn write
    run.append_log({"step": 3, "loss": np.float64(1.5)})
    assert run.read_log() == [{"step": 1, "loss": 2.5}, {"step": 3, "loss": 1.5}]
    run.trim_log(2)
    assert run.read_log() == [{"step": 1, "loss": 2.5}]
    assert not run.looks_foreign()
    (run.path / "notes.txt").write_text("mine")
    assert run.looks_foreign()
    (tmp_path / "file").write_text("x")
    assert RunDir(tmp_path / "file").looks_foreign()
    with pytest.raises(CheckpointError, match="cannot write to --out .* choose a writable"):
        RunDir(tmp_path / "file" / "sub").check_writable()
    with pytest.raises(CheckpointError, match="cannot write the checkpoint"):
        save(RunDir(tmp_path / "file"), 1)


def trainer_state(step):
    rng = save_rng(np.random.default_rng(step))
    return {"step": step, "rng": rng, "best_val": 1.0 / step, "worst": float("inf"), "é": None}


def save(run, step, best=False, **kw):
    save_checkpoint(
        run,
        step=step,
        model_arrays=arrays(step),
        trainer_arrays={"exp_avg.w": np.full(3, step)},
        trainer_state=trainer_state(step),
        config={"hidden": 8, "vocab": {"chars": ["a"]}},
        best_arrays=arrays(100 + step) if best else None,
        **kw,
    )


def assert_checkpoint(run, step, best_step):
    config, model, trainer, state = load_checkpoint(run)
    assert config == {"hidden": 8, "vocab": {"chars": ["a"]}}
    assert_same(model, arrays(step))
    assert_same(trainer, {"exp_avg.w": np.full(3, step)})
    assert state == json.loads(json.dumps(trainer_state(step)))
    best = load_best(run)
    if best_step is None:
        assert best is None
    else:
        assert_same(best, arrays(100 + best_step))


def test_checkpoint_round_trip_and_files(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(run)
    save(run, 1)
    assert_checkpoint(run, 1, None)
    save(run, 2, best=True)
    save(run, 3)
    assert_checkpoint(run, 3, 2)  # the best file survives later saves
    assert run.is_run() and not run.looks_foreign()
    names = listing(tmp_path)
    assert [n for n in names if not n.startswith("ckpt-")] == [
        "best.safetensors",
        "config.json",
        "model.safetensors",
        "trainer.json",
    ]
    assert len([n for n in names if n.startswith("ckpt-")]) == 3  # model, trainer, best
    assert_same(load_arrays(tmp_path / "model.safetensors"), arrays(3))
    assert_same(load_arrays(tmp_path / "best.safetensors"), arrays(102))
    assert read_json(tmp_path / "config.json")["hidden"] == 8
    config, weights = load_model(run, best=True)
    assert_same(weights, arrays(102))
    save(run, 3)  # the same step again is fine
    assert_checkpoint(run, 3, 2)


def test_load_model_without_trainer_json(tmp_path):
    save(RunDir(tmp_path), 4)
    for name in os.listdir(tmp_path):
        if name.startswith("ckpt-") or name == "trainer.json":
            os.unlink(tmp_path / name)
    config, weights = load_model(RunDir(tmp_path))
    assert config["hidden"] == 8
    assert_same(weights, arrays(4))
    with pytest.raises(CheckpointError, match="not a directory"):
        load_model(RunDir(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(RunDir(tmp_path / "empty"))


def test_checkpoint_detects_inconsistency(tmp_path):
    run = RunDir(tmp_path / "a")
    save(run, 1)
    other = RunDir(tmp_path / "b")
    save(other, 2)
    rec = read_json(run.trainer_json_path)
    model_file = rec["model"]["file"]
    # a file of another checkpoint under this one's name: checksum and metadata disagree
    os.replace(
        other.file(read_json(other.trainer_json_path)["model"]["file"]), run.file(model_file)
    )
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(run)
    save(run, 1)
    rec = read_json(run.trainer_json_path)
    for bad, match in [
        ({**rec, "format": "other"}, "not an nprnn checkpoint"),
        ({**rec, "step": 2}, "another step"),
        ({**rec, "model": {"file": "../../etc/passwd", "sha256": "0"}}, "entry 'model'"),
        ({**rec, "model": rec["trainer"]}, "entry 'model'"),
        ({**rec, "config": None}, "config"),
        ({**rec, "state": {"step": 9}, "keep_checksum": True}, "checksum does not match"),
    ]:
        bad = {k: v for k, v in bad.items() if k != "checksum"}
        if bad.pop("keep_checksum", False):
            bad["checksum"] = rec["checksum"]
        else:  # a self-consistent record whose content is wrong
            bad["checksum"] = ck.sha256_hex(ck.canonical_json(bad).encode())
        atomic_write_json(run.trainer_json_path, bad)
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(run)
    atomic_write_json(run.trainer_json_path, rec)
    os.unlink(run.file(rec["trainer"]["file"]))
    with pytest.raises(CheckpointError, match="file not found"):
        load_checkpoint(run)


def _resign(run, rec):
    """Write ``rec`` as trainer.json with a matching checksum (consistent but wrong)."""
    body = {k: v for k, v in rec.items() if k != "checksum"}
    atomic_write_json(
        run.trainer_json_path, {**body, "checksum": ck.sha256_hex(ck.canonical_json(body).encode())}
    )


def test_record_fields_are_type_checked(tmp_path):
    """Every field of a (re-signed) trainer.json of the wrong type: a one-line
    CheckpointError naming trainer.json and the field, from every loader."""
    run = RunDir(tmp_path)
    save(run, 3, best=True)
    rec = read_json(run.trainer_json_path)
    junk = [None, 123, 1.5, True, "x", [], {}, {"file": None}, "a" * 500]
    cases = []
    for kind in ("model", "trainer", "best"):
        for j in junk:
            if not (kind == "best" and j is None):
                cases.append((kind, j))
            cases.append((kind, {**rec[kind], "file": j}))
            cases.append((kind, {**rec[kind], "sha256": j}))
    cases += [(k, j) for k in ("config", "state") for j in junk if not isinstance(j, dict)]
    cases += [(k, j) for k in ("step", "tag") for j in junk if j not in (123, {})]
    cases.append(("model", {**rec["model"], "file": rec["model"]["file"] + "\n"}))
    for key, value in cases:
        _resign(run, {**rec, key: value})
        for load in (load_checkpoint, load_best, load_model, lambda r: load_model(r, best=True)):
            with pytest.raises(CheckpointError, match="trainer.json") as info:
                load(run)
            msg = str(info.value)
            assert "\n" not in msg and len(msg) < 400, msg
            assert key in msg, msg


def test_record_without_best(tmp_path):
    """A record with no best entry (absent or null): no best weights, the latest load."""
    run = RunDir(tmp_path)
    save(run, 2, best=True)
    rec = read_json(run.trainer_json_path)
    for body in ({k: v for k, v in rec.items() if k != "best"}, {**rec, "best": None}):
        _resign(run, body)
        assert load_best(run) is None
        assert_same(load_model(run, best=True)[1], arrays(2))
        assert_same(load_checkpoint(run)[1], arrays(2))
    save(run, 3)  # the previous best is kept only if the record names it: here none
    assert load_best(run) is None


def test_checkpoint_mutation_fuzz(tmp_path):
    """Flip or truncate any checkpoint file: the load is exact or a CheckpointError."""
    run = RunDir(tmp_path)
    save(run, 5, best=True)
    rec = read_json(run.trainer_json_path)
    files = ["trainer.json", rec["model"]["file"], rec["trainer"]["file"]]
    originals = {f: run.file(f).read_bytes() for f in files}
    rng = np.random.default_rng(1)
    errors = 0
    for i in range(300):
        f = files[i % 3]
        data = bytearray(originals[f])
        if i % 2:
            data = data[: rng.integers(0, len(data))]
        else:
            for pos in rng.integers(0, len(data), size=rng.integers(1, 3)):
                data[pos] ^= 1 << int(rng.integers(0, 8))
        run.file(f).write_bytes(bytes(data))
        try:
            config, model, trainer, state = load_checkpoint(run)
        except CheckpointError as e:
            assert "\n" not in str(e)
            errors += 1
        else:  # only a harmless change (JSON whitespace, a header pad) may load: exactly
            assert_same(model, arrays(5))
            assert_same(trainer, {"exp_avg.w": np.full(3, 5)})
            assert state == json.loads(json.dumps(trainer_state(5)))
        run.file(f).write_bytes(originals[f])
    assert errors > 250
    assert_checkpoint(run, 5, 5)


def test_crash_at_every_write_leaves_a_loadable_checkpoint(tmp_path, monkeypatch):
    """Kill the save at each os.replace / os.link in turn (the previous complete
    checkpoint or the new one must load), then check a later save recovers."""
    real_replace, real_link = os.replace, os.link
    n_crashes = 0
    for crash_at in range(1, 50):
        run = RunDir(tmp_path / f"r{crash_at}")
        save(run, 1, best=True)
        calls = [0]

        def counting(real, calls=calls, crash_at=crash_at):
            def f(*a, **k):
                calls[0] += 1
                if calls[0] == crash_at:
                    raise KeyboardInterrupt("simulated kill")
                return real(*a, **k)

            return f

        monkeypatch.setattr(os, "replace", counting(real_replace))
        monkeypatch.setattr(os, "link", counting(real_link))
        try:
            save(run, 2, best=True)
            crashed = False
        except KeyboardInterrupt:
            crashed = True
        finally:
            monkeypatch.setattr(os, "replace", real_replace)
            monkeypatch.setattr(os, "link", real_link)
        if not crashed:
            break
        n_crashes += 1
        step = read_json(run.trainer_json_path)["step"]
        assert step in (1, 2)
        assert_checkpoint(run, step, step)
        save(run, 3)  # the next save works and cleans up after the crash
        assert_checkpoint(run, 3, step)
        assert len([n for n in listing(run.path) if n.startswith(("ckpt-", "."))]) == 3
    assert n_crashes >= 7  # 3 array files + commit + model copy + best copy + config


def test_sigkill_during_saves(tmp_path):
    """A real SIGKILL at random moments of a save loop never breaks the checkpoint."""
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {SRC!r})
        from nprnn.app.runs import RunDir, save_checkpoint
        run = RunDir(sys.argv[1])
        step = 0
        print("ready", flush=True)
        while True:
            step += 1
            w = np.full((200, 200), step, dtype=np.float32)
            save_checkpoint(run, step=step, model_arrays={{"w": w}},
                            trainer_arrays={{"m": w[:10]}}, trainer_state={{"step": step}},
                            config={{"c": 1}}, best_arrays={{"w": w}} if step % 3 == 0 else None)
    """)
    rng = np.random.default_rng(0)
    for trial in range(3):
        d = tmp_path / f"k{trial}"
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(d)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2 + 0.3 * rng.random())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        run = RunDir(d)
        if not run.has_checkpoint():
            continue
        config, model, trainer, state = load_checkpoint(run)
        step = state["step"]
        assert config == {"c": 1} and step >= 1
        assert (model["w"] == step).all() and (trainer["m"] == step).all()
        best = load_best(run)
        if step >= 3:
            assert (best["w"] == step - step % 3).all()
