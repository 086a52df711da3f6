"""nprnn.save / nprnn.load: safetensors round trips, torch interop, refusals change nothing."""

import os
import subprocess
import sys

import numpy as np
import pytest

import nprnn

safetensors = pytest.importorskip("safetensors")


class Model(nprnn.Module):
    def __init__(self, dtype=np.float32, seed=0):
        super().__init__()
        self.emb = nprnn.Embedding(6, 4, dtype=dtype, rng=seed)
        self.rnn = nprnn.LSTM(4, 3, bidirectional=True, dtype=dtype, rng=seed + 1)
        self.head = nprnn.Linear(6, 2, dtype=dtype, rng=seed + 2)


def _equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip(tmp_path, dtype):
    a, b = Model(dtype, 0), Model(dtype, 10)
    assert not _equal(a, b)
    path = tmp_path / "m.safetensors"
    assert nprnn.save(a, path) is None
    assert nprnn.load(b, str(path)) is b
    assert _equal(a, b)
    assert b.params["head.weight"].dtype == dtype
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary left behind
    mode = os.stat(path).st_mode & 0o777
    assert mode == 0o666 & ~_umask()  # as open() would make it, not mkstemp's 0o600


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_shared_module_saved_under_each_name(tmp_path):
    m = nprnn.Module()
    m.a = nprnn.Linear(2, 2, rng=0)
    m.b = m.a
    nprnn.save(m, tmp_path / "s.safetensors")
    from safetensors.numpy import load_file

    stored = load_file(str(tmp_path / "s.safetensors"))
    assert sorted(stored) == ["a.bias", "a.weight", "b.bias", "b.weight"]
    other = nprnn.Module()
    other.a = nprnn.Linear(2, 2, rng=5)
    other.b = other.a
    nprnn.load(other, tmp_path / "s.safetensors")
    np.testing.assert_array_equal(other.a.params["weight"], m.a.params["weight"])


def test_save_a_state_dict_and_metadata(tmp_path):
    m = Model()
    nprnn.save(m.state_dict(), tmp_path / "d.safetensors", metadata={"step": "3"})
    with safetensors.safe_open(str(tmp_path / "d.safetensors"), framework="np") as f:
        assert f.metadata() == {"step": "3"}
    fresh = Model(seed=3)
    nprnn.load(fresh, tmp_path / "d.safetensors")
    assert _equal(m, fresh)
    with pytest.raises(TypeError, match=r"^save needs an nprnn\.Module or a mapping"):
        nprnn.save([1, 2], tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match=r"^metadata must be a mapping of str -> str$"):
        nprnn.save(m, tmp_path / "x.safetensors", metadata={"step": 3})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nprnn.save(m, tmp_path / "no" / "x.safetensors")


def _write(path, arrays):
    from safetensors.numpy import save_file

    save_file(arrays, str(path))


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda d: d.pop("head.bias"), r"missing \['head\.bias'\]"),
        (lambda d: d.update({"head.extra": np.zeros(2, np.float32)}),
         r"unexpected \['head\.extra'\]"),
        (lambda d: d.update({"rnn.weight_hh_l0": np.zeros((12, 4), np.float32)}),
         r"rnn\.weight_hh_l0 has shape \(12, 4\), expected \(12, 3\)"),
        (lambda d: d.update({"emb.weight": d["emb.weight"].astype(np.float64)}),
         r"emb\.weight is F64 in the file, the model's is float32"),
        (lambda d: d.update({"emb.weight": d["emb.weight"].astype(np.float16)}),
         r"emb\.weight is F16 in the file"),
        (lambda d: d["head.weight"].__setitem__((0, 1), np.nan),
         r"head\.weight contains a non-finite value \(nan\) at index \(0, 1\)"),
    ],
)  # fmt: skip
def test_refused_load_changes_nothing(tmp_path, edit, match):
    src, dst = Model(seed=0), Model(seed=20)
    d = src.state_dict()
    edit(d)
    path = tmp_path / "bad.safetensors"
    _write(path, d)
    before = dst.state_dict()
    with pytest.raises(ValueError, match=match) as e:
        nprnn.load(dst, path)
    assert str(e.value).startswith(str(path) + ": ") and "\n" not in str(e.value)
    after = dst.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_corrupt_and_missing_files(tmp_path):
    m = Model()
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ValueError, match=r"junk\.safetensors: not a readable safetensors file"):
        nprnn.load(m, bad)
    with pytest.raises(FileNotFoundError, match="no such file"):
        nprnn.load(m, tmp_path / "none.safetensors")
    with pytest.raises(TypeError, match="^load needs an nprnn.Module"):
        nprnn.load({}, bad)
    with pytest.raises(TypeError, match="^path must be a str or os.PathLike, got int$"):
        nprnn.load(m, 3)


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    a = Model(seed=0)
    nprnn.save(a, path)
    old = path.read_bytes()

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        nprnn.save(Model(seed=1), path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_import_nprnn_loads_numpy_only():
    code = (
        "import sys; import nprnn; "
        "std = sys.stdlib_module_names; "
        "third = sorted({m.split('.')[0] for m in sys.modules} - set(std) - {'nprnn', 'numpy'}); "
        "print(third)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    extra = [m for m in eval(out.stdout) if not m.startswith("_")]
    assert extra == [], f"import nprnn loaded {extra}"


# ----------------------------------------------------------------------------- torch


def _torch_model(torch):
    class TModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(6, 4)
            self.rnn = torch.nn.LSTM(4, 3, bidirectional=True)
            self.head = torch.nn.Linear(6, 2)

    return TModel()


def test_file_loads_into_torch_and_back(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    m = Model(seed=4)
    nprnn.save(m, tmp_path / "m.safetensors")
    tm = _torch_model(torch)
    tm.load_state_dict(load_file(str(tmp_path / "m.safetensors")))  # strict by default
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), m.state_dict()[k])
    t2 = _torch_model(torch)
    save_file(t2.state_dict(), str(tmp_path / "t.safetensors"))
    back = nprnn.load(Model(seed=9), tmp_path / "t.safetensors")
    for k, v in t2.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v.numpy())
