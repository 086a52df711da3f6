"""Run directories and checkpoints: safetensors + JSON, atomic writes, no pickle.

API notes (differences from the first plan): there is no fixed ``trainer.safetensors``;
the optimizer moments live in the step-stamped ``ckpt-*.trainer.safetensors`` that
``trainer.json`` names (see the protocol below). ``save_checkpoint`` takes
``best_arrays=None`` (new best weights, or None to keep the previous best). Added:
``load_model(run, best=False)``, ``load_best(run)``, ``RunDir.has_checkpoint()``,
``RunDir.read_log()``, ``RunDir.trim_log(step)``, ``load_arrays_with_metadata(path)``.

Loading never executes code: arrays are read with ``safetensors.numpy.load`` from bytes,
everything else is JSON. Every failure to read (missing, truncated, garbage, foreign or
inconsistent files) raises :class:`CheckpointError` with one line naming the file and
what to do.

A run directory (:class:`RunDir`) holds

==============================  ==========================================================
``config.json``                 architecture, vocabulary, options (copy for users)
``model.safetensors``           latest weights, PyTorch-style names (hard link to the
                                checkpoint's model file, or a copy)
``best.safetensors``            weights with the best validation loss so far (likewise)
``trainer.json``                the commit record of the latest checkpoint (below)
``ckpt-<step>-<tag>.<kind>.safetensors``
                                the checkpoint's immutable files; kind is ``model``,
                                ``trainer`` (optimizer moments) or ``best``
``log.jsonl``                   one JSON object per line (evaluations, events)
==============================  ==========================================================

Checkpoint protocol (:func:`save_checkpoint`). Every file is written by
:func:`atomic_write_bytes`: a temporary file in the same directory, flush + fsync,
``os.replace``, fsync of the directory. So each name always holds either its old or its
new complete content.

1. Write the new checkpoint's array files under fresh names
   ``ckpt-{step:08d}-{tag}.{model,trainer[,best]}.safetensors`` (``tag`` is random, so a
   new file never replaces one the current checkpoint uses); each carries the metadata
   ``{"step", "tag", "kind"}``.
2. Write ``trainer.json`` (the commit point): ``step``, ``tag``, the name and SHA-256 of
   each array file, the config, the trainer state, and a SHA-256 ``checksum`` of all
   that (its canonical JSON), so a damaged or hand-edited record is detected. Until
   this ``os.replace``, the old ``trainer.json`` and all the files it names are
   untouched; after it, the new ones are complete on disk (they were fsynced before).
3. Refresh the user copies ``model.safetensors``, ``best.safetensors`` (hard links,
   replaced atomically) and ``config.json``, then delete the ``ckpt-*`` files and our
   temporary files that ``trainer.json`` does not name.

A kill at any moment therefore leaves ``trainer.json`` naming a complete, consistent set
of files: the previous checkpoint (kill before step 2) or the new one (kill after). Steps
after 2 only touch copies that the loader does not read. :func:`load_checkpoint` reads
only ``trainer.json`` and the files it names, and checks each file's SHA-256 and its
``step``/``tag``/``kind`` metadata against it: any mismatch is a :class:`CheckpointError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

FORMAT = "nprnn-checkpoint"
VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)
_CKPT_RE = re.compile(r"^ckpt-(\d{8,})-([0-9a-f]{8})\.(model|trainer|best)\.safetensors$")
_TMP_RE = re.compile(r"^\..+\.tmp-[A-Za-z0-9_]+$")


class CheckpointError(ValueError):
    """A checkpoint or run directory cannot be read or written; one-line message."""


# ----------------------------------------------------------------------------- atomic files


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # platforms without directory fds (Windows)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds the old or the new content, never
    a mix: temp file in the same directory, flush + fsync, ``os.replace``, fsync the dir.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    path = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def atomic_write_text(path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(f"cannot store a {type(o).__name__} in JSON")


def _dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, default=_json_default)


def atomic_write_json(path, obj) -> None:
    """Atomically write ``obj`` as JSON (sorted keys, indent 2, UTF-8, trailing newline)."""
    atomic_write_text(path, _dumps(obj) + "\n")


def _read_bytes(path, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CheckpointError(f"cannot read {os.fspath(path)!r}: file not found — {what}") from None
    except OSError as e:
        raise CheckpointError(
            f"cannot read {os.fspath(path)!r}: {e.strerror or e} — {what}"
        ) from None


def read_json(path) -> dict:
    """The JSON object in ``path``; :class:`CheckpointError` if missing, garbage, not an object."""
    fix = "restore the file or start a new run in an empty directory"
    data = _read_bytes(path, fix)
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{os.fspath(path)!r} is not valid JSON ({msg}) — {fix}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{os.fspath(path)!r} holds a JSON {type(obj).__name__}, not an object — {fix}"
        )
    return obj


# ----------------------------------------------------------------------------- arrays


def _safetensors_numpy():
    try:
        import safetensors.numpy as stn
    except ImportError:
        raise CheckpointError(
            "checkpoints need the safetensors package — pip install 'nprnn[cli]'"
        ) from None
    return stn


def arrays_to_bytes(arrays: dict, metadata: dict | None = None) -> bytes:
    """The safetensors serialization of ``arrays`` (C-contiguous copies are made if needed)."""
    if not isinstance(arrays, dict):
        raise TypeError(f"arrays must be a dict name -> np.ndarray, got {type(arrays).__name__}")
    flat = {}
    for k, a in arrays.items():
        if not isinstance(k, str):
            raise TypeError(f"array names must be strings, got {k!r}")
        a = np.asarray(a)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"array {k!r} has unsupported dtype {a.dtype}")
        flat[k] = a if a.flags.c_contiguous else a.copy(order="C")  # keeps 0-d arrays 0-d
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata must map strings to strings")
    return _safetensors_numpy().save(flat, metadata=metadata)


def save_arrays(path, arrays: dict, metadata: dict | None = None) -> None:
    """Atomically write ``arrays`` (name -> ndarray) as a safetensors file."""
    data = arrays_to_bytes(arrays, metadata)
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise CheckpointError(
            f"cannot write {os.fspath(path)!r}: {e.strerror or e} — check the disk space "
            "and permissions"
        ) from None


def _parse(data: bytes, name: str) -> tuple[dict, dict]:
    fix = "the file is truncated or not a safetensors file; restore it or retrain"
    try:
        n = int.from_bytes(data[:8], "little") if len(data) >= 8 else None
        if n is None or n > len(data) - 8:
            raise ValueError("file shorter than its header")
        header = json.loads(data[8 : 8 + int(n)].decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ValueError("bad __metadata__")
        arrays = _safetensors_numpy().load(bytes(data))
    except CheckpointError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # safetensors may raise a Rust PanicException (BaseException)
        msg = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"cannot load {name!r}: {msg} — {fix}") from None
    out = {}
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise CheckpointError(f"cannot load {name!r}: array {k!r} has dtype {a.dtype} — {fix}")
        out[k] = np.array(a, copy=True)  # own, writable memory
    return out, dict(meta)


def load_arrays_with_metadata(path) -> tuple[dict, dict]:
    """``(arrays, metadata)`` of a safetensors file; :class:`CheckpointError` on any failure."""
    data = _read_bytes(path, "check the path of the run directory")
    return _parse(data, os.fspath(path))


def load_arrays(path) -> dict:
    """The arrays (name -> writable ndarray) of a safetensors file; any failure (missing,
    truncated, garbage, bad header) raises :class:`CheckpointError`."""
    return load_arrays_with_metadata(path)[0]


# ----------------------------------------------------------------------------- rng


_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def _jsonable_rng_state(state):
    if isinstance(state, dict):
        return {k: _jsonable_rng_state(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return [int(x) for x in state.ravel()]
    if isinstance(state, np.integer):
        return int(state)
    return state


def save_rng(rng: np.random.Generator) -> dict:
    """The JSON-able state of ``rng`` (its ``bit_generator.state``, arrays as lists)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    return _jsonable_rng_state(rng.bit_generator.state)


def load_rng(d) -> np.random.Generator:
    """A new Generator in the state :func:`save_rng` returned; :class:`CheckpointError` if
    the state is malformed."""
    name = d.get("bit_generator") if isinstance(d, dict) else None
    if name not in _BIT_GENERATORS:
        raise CheckpointError(
            f"bad random-generator state (bit_generator {name!r}) — the checkpoint is damaged"
        )
    bg = getattr(np.random, name)()
    state = dict(d)
    try:
        if name == "MT19937":
            state["state"] = dict(state["state"])
            state["state"]["key"] = np.asarray(state["state"]["key"], dtype=np.uint32)
        elif name == "Philox":
            for k in ("counter", "key"):
                state["state"][k] = np.asarray(state["state"][k], dtype=np.uint64)
            state["buffer"] = np.asarray(state["buffer"], dtype=np.uint64)
        bg.state = state
    except Exception as e:
        raise CheckpointError(
            f"bad random-generator state ({type(e).__name__}: {e}) — the checkpoint is damaged"
        ) from None
    return np.random.Generator(bg)


# ----------------------------------------------------------------------------- run dirs


class RunDir:
    """The files of one training run (see the module docstring for the layout)."""

    CONFIG, MODEL, BEST = "config.json", "model.safetensors", "best.safetensors"
    TRAINER_JSON, LOG = "trainer.json", "log.jsonl"
    KNOWN = (CONFIG, MODEL, BEST, TRAINER_JSON, LOG)

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    config_path = property(lambda self: self.file(self.CONFIG))
    model_path = property(lambda self: self.file(self.MODEL))
    best_path = property(lambda self: self.file(self.BEST))
    trainer_json_path = property(lambda self: self.file(self.TRAINER_JSON))
    log_path = property(lambda self: self.file(self.LOG))

    def has_checkpoint(self) -> bool:
        """Whether a committed checkpoint exists (``trainer.json``)."""
        return self.trainer_json_path.is_file()

    def is_run(self) -> bool:
        """A checkpoint, or at least ``config.json`` + ``model.safetensors`` (weights only)."""
        return self.has_checkpoint() or (self.config_path.is_file() and self.model_path.is_file())

    def _ours(self, name: str) -> bool:
        return name in self.KNOWN or bool(_CKPT_RE.match(name) or _TMP_RE.match(name))

    def looks_foreign(self) -> bool:
        """True if the path is a file, or a directory holding anything a run does not write
        (so writing a run there could mix with, or be mistaken for, someone else's files)."""
        if not self.path.exists():
            return False
        if not self.path.is_dir():
            return True
        return any(not self._ours(e.name) for e in os.scandir(self.path))

    def check_writable(self) -> None:
        """Create the directory if needed and write + delete a probe file."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".probe.tmp-", dir=self.path)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise CheckpointError(
                f"cannot write to --out {str(self.path)!r}: {e.strerror or e} — "
                "choose a writable directory"
            ) from None

    def append_log(self, record: dict) -> None:
        """Append ``record`` as one JSON line (flush + fsync); a torn last line is closed first."""
        line = json.dumps(record, sort_keys=True, ensure_ascii=False, default=_json_default)
        with open(self.log_path, "ab+") as f:
            f.seek(0, os.SEEK_END)
            prefix = b""
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    prefix = b"\n"
            f.write(prefix + line.encode("utf-8") + b"\n")
            f.flush()
            os.fsync(f.fileno())

    def read_log(self) -> list[dict]:
        """The log's records; lines that are not JSON objects (a torn write) are skipped."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for raw in data.splitlines():
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def trim_log(self, step: int) -> None:
        """Drop log records with ``"step" > step`` (logged after the checkpoint a run resumes
        from, so that the resumed run does not log them twice); rewritten atomically."""
        if not self.log_path.is_file():
            return
        keep = [
            r for r in self.read_log() if not (isinstance(r.get("step"), int) and r["step"] > step)
        ]
        text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in keep)
        atomic_write_text(self.log_path, text)


# ----------------------------------------------------------------------------- checkpoints


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_ckpt_file(run: RunDir, step: int, tag: str, kind: str, arrays: dict) -> dict:
    name = f"ckpt-{step:08d}-{tag}.{kind}.safetensors"
    data = arrays_to_bytes(arrays, {"step": str(step), "tag": tag, "kind": kind})
    atomic_write_bytes(run.file(name), data)
    return {"file": name, "sha256": _sha256(data)}


def _link_copy(run: RunDir, src: str, dst: str) -> None:
    """Make ``dst`` the same content as ``src`` atomically: a hard link, or else a copy."""
    target = run.file(dst)
    tmp = run.file(f".{dst}.tmp-{os.urandom(4).hex()}")
    try:
        os.link(run.file(src), tmp)
    except OSError:
        atomic_write_bytes(target, run.file(src).read_bytes())
        return
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(str(run.path))


def _previous_best(run: RunDir) -> dict | None:
    try:
        rec = read_json(run.trainer_json_path)
        best = rec.get("best")
        if isinstance(best, dict) and _CKPT_RE.match(str(best.get("file"))):
            if run.file(best["file"]).is_file():
                return {"file": best["file"], "sha256": str(best.get("sha256"))}
    except CheckpointError:
        pass
    return None


def save_checkpoint(
    run: RunDir,
    *,
    step: int,
    model_arrays: dict,
    trainer_arrays: dict,
    trainer_state: dict,
    config: dict,
    best_arrays: dict | None = None,
) -> None:
    """Save a complete checkpoint of ``step`` following the protocol in the module docstring.

    ``model_arrays``: weights (PyTorch-style names); ``trainer_arrays``: optimizer
    buffers; ``trainer_state`` and ``config``: JSON-able dicts; ``best_arrays``: new best
    weights, or None to keep the previous checkpoint's best file (if any).
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    step = int(step)
    if not isinstance(trainer_state, dict) or not isinstance(config, dict):
        raise TypeError("trainer_state and config must be dicts")
    _dumps(trainer_state), _dumps(config)  # fail on non-JSON-able values before writing
    tag = os.urandom(4).hex()
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        record = {
            "format": FORMAT,
            "version": VERSION,
            "step": step,
            "tag": tag,
            "model": _write_ckpt_file(run, step, tag, "model", model_arrays),
            "trainer": _write_ckpt_file(run, step, tag, "trainer", trainer_arrays),
            "best": (
                _write_ckpt_file(run, step, tag, "best", best_arrays)
                if best_arrays is not None
                else _previous_best(run)
            ),
            "config": config,
            "state": trainer_state,
        }
        record["checksum"] = _sha256(_dumps(record).encode("utf-8"))
        atomic_write_json(run.trainer_json_path, record)  # the commit point
        # After the commit: user-facing copies and clean-up (the loader reads none of it).
        _link_copy(run, record["model"]["file"], RunDir.MODEL)
        if record["best"] is not None:
            _link_copy(run, record["best"]["file"], RunDir.BEST)
        atomic_write_json(run.config_path, config)
    except OSError as e:
        raise CheckpointError(
            f"cannot write the checkpoint to {str(run.path)!r}: {e.strerror or e} — "
            "check the disk space and permissions"
        ) from None
    keep = {record["model"]["file"], record["trainer"]["file"]}
    if record["best"] is not None:
        keep.add(record["best"]["file"])
    for e in os.scandir(run.path):
        if (_CKPT_RE.match(e.name) and e.name not in keep) or _TMP_RE.match(e.name):
            with contextlib.suppress(OSError):
                os.unlink(e.path)


def _read_record(run: RunDir) -> dict:
    path = run.trainer_json_path
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint in {str(run.path)!r} (no {RunDir.TRAINER_JSON}) — "
            "pass the --out directory of a training run"
        )
    rec = read_json(path)
    bad = f"{str(path)!r} is damaged or from another program — restore it or retrain"
    if rec.get("format") != FORMAT or rec.get("version") != VERSION:
        raise CheckpointError(
            f"{str(path)!r} is not an nprnn checkpoint (format {rec.get('format')!r}, "
            f"version {rec.get('version')!r}) — pass a run directory made by nprnn train"
        )
    body = {k: v for k, v in rec.items() if k != "checksum"}
    if rec.get("checksum") != _sha256(_dumps(body).encode("utf-8")):
        raise CheckpointError(f"{bad} (its checksum does not match)")
    step, tag = rec.get("step"), rec.get("tag")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{bad} (step {_short(step)})")
    if not isinstance(tag, str) or not re.fullmatch(r"[0-9a-f]{8}", tag):
        raise CheckpointError(f"{bad} (tag {_short(tag)})")
    for key in ("config", "state"):
        if not isinstance(rec.get(key), dict):
            raise CheckpointError(
                f"{bad} ({key!r} must be an object, got {_json_type(rec.get(key))})"
            )
    for kind in ("model", "trainer", "best"):
        entry = rec.get(kind)
        if entry is None and kind == "best":
            continue  # no best weights saved (the key may be absent, too)
        if not isinstance(entry, dict):
            raise CheckpointError(
                f"{bad} (entry {kind!r} must be an object, got {_json_type(entry)})"
            )
        file, sha = entry.get("file"), entry.get("sha256")
        if not isinstance(file, str):
            raise CheckpointError(
                f"{bad} (entry {kind!r}: 'file' must be a string, got {_json_type(file)})"
            )
        m = _CKPT_RE.fullmatch(file)
        if not m or m.group(3) != kind:
            raise CheckpointError(
                f"{bad} (entry {kind!r}: 'file' {_short(file)} is not the name of a {kind} "
                "checkpoint file)"
            )
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise CheckpointError(
                f"{bad} (entry {kind!r}: 'sha256' {_short(sha)} is not a SHA-256 hex digest)"
            )
    return {**rec, "best": rec.get("best")}


def _json_type(v) -> str:
    """The JSON name of ``v``'s type, for messages about a record's fields."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object" if isinstance(v, dict) else type(v).__name__


def _short(v, limit: int = 60) -> str:
    """``repr(v)``, cut to ``limit`` characters (a record field quoted in a message)."""
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _load_entry(run: RunDir, entry: dict, kind: str) -> dict:
    path = run.file(entry["file"])
    data = _read_bytes(path, "the checkpoint is incomplete; restore the run directory or retrain")
    if _sha256(data) != entry["sha256"]:
        raise CheckpointError(
            f"{str(path)!r} does not match its checksum in trainer.json (corrupted) — "
            "restore the run directory or retrain"
        )
    arrays, meta = _parse(data, str(path))
    m = _CKPT_RE.match(entry["file"])
    want = {"step": str(int(m.group(1))), "tag": m.group(2), "kind": kind}
    if any(meta.get(k) != v for k, v in want.items()):
        raise CheckpointError(
            f"{str(path)!r} belongs to another checkpoint (metadata {meta}) — restore the "
            "run directory or retrain"
        )
    return arrays


def load_checkpoint(run: RunDir) -> tuple[dict, dict, dict, dict]:
    """``(config, model_arrays, trainer_arrays, trainer_state)`` of the committed checkpoint."""
    rec = _read_record(run)
    for kind in ("model", "trainer"):
        m = _CKPT_RE.match(rec[kind]["file"])
        if int(m.group(1)) != rec["step"] or m.group(2) != rec["tag"]:
            raise CheckpointError(
                f"{str(run.trainer_json_path)!r} names files of another step — restore the "
                "run directory or retrain"
            )
    model = _load_entry(run, rec["model"], "model")
    trainer = _load_entry(run, rec["trainer"], "trainer")
    return rec["config"], model, trainer, rec["state"]


def load_model(run: RunDir, *, best: bool = False) -> tuple[dict, dict]:
    """``(config, weights)`` for sampling / evaluation.

    With a checkpoint, the weights come from it (``best=True``: the best-validation
    weights, falling back to the latest if none were saved). Without ``trainer.json``,
    ``config.json`` + ``model.safetensors`` (or ``best.safetensors``) are read directly,
    so a directory holding just those two files works too.
    """
    if run.has_checkpoint():
        rec = _read_record(run)
        entry, kind = (rec["best"], "best") if best and rec.get("best") else (rec["model"], "model")
        return rec["config"], _load_entry(run, entry, kind)
    if not run.path.is_dir():
        raise CheckpointError(
            f"{str(run.path)!r} is not a directory — pass the --out directory of a training run"
        )
    if not run.config_path.is_file():
        raise CheckpointError(
            f"no {RunDir.CONFIG} in {str(run.path)!r} — pass the --out directory of a training run"
        )
    config = read_json(run.config_path)
    weights = run.best_path if best and run.best_path.is_file() else run.model_path
    return config, load_arrays(weights)


def load_best(run: RunDir) -> dict | None:
    """The best-validation weights of the committed checkpoint, or None if none were saved."""
    rec = _read_record(run)
    entry = rec.get("best")
    return _load_entry(run, entry, "best") if entry else None
