"""Run directories and checkpoints: safetensors + JSON, atomic writes (:mod:`.files`).

Loading never executes code: arrays are read with ``safetensors.numpy.load`` from bytes,
everything else is JSON. Every failure to read (missing, truncated, garbage, foreign or
inconsistent files) raises :class:`~nprnn.app.errors.CheckpointError` naming the file
and what to do.

A run directory (:class:`RunDir`) holds

==============================  ==========================================================
``config.json``                 architecture, vocabulary, options (copy for users)
``model.safetensors``           latest weights, PyTorch-style names (a copy of the
                                checkpoint's model file)
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
3. Refresh the user copies ``model.safetensors``, ``best.safetensors`` (when a new best
   was saved) and ``config.json`` (separate files written atomically, so that damage to
   a copy never reaches the checkpoint), then delete the ``ckpt-*`` files and our
   temporary files that ``trainer.json`` does not name.

A kill at any moment therefore leaves ``trainer.json`` naming a complete, consistent set
of files: the previous checkpoint (kill before step 2) or the new one (kill after). Steps
after 2 only touch copies that the loader does not read. :func:`load_checkpoint` reads
only ``trainer.json`` and the files it names, and checks each file's SHA-256 and its
``step``/``tag``/``kind`` metadata against it: any mismatch is a :class:`CheckpointError`.

The user copies (``config.json``, ``model.safetensors``, ``best.safetensors``) are not
what the loader reads, but they are what a user hands to PyTorch, so every command that
uses a run checks them too (:func:`check_copies`): a copy that is damaged (not parseable,
or claiming the current checkpoint but not matching its checksum) is an error naming the
file, and :func:`repair` (``nprnn repair DIR``) rewrites the copies from the checkpoint.
A copy that is missing or still the previous checkpoint's (a kill between steps 2 and 3)
is not damage: a resume refreshes it (:func:`refresh_copies`), before any new checkpoint
— also when the run had already reached its last step and trains no further.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .files import (
    _json_default,
    arrays_to_bytes,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    canonical_json,
    load_arrays,
    parse_arrays,
    read_bytes,
    read_json,
    sha256_hex,
)

__all__ = [
    "RunDir",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "load_best",
    "check_copies",
    "refresh_copies",
    "repair",
    "FORMAT",
    "VERSION",
]

FORMAT = "nprnn-checkpoint"
VERSION = 1
_CKPT_RE = re.compile(r"^ckpt-(\d{8,})-([0-9a-f]{8})\.(model|trainer|best)\.safetensors$")
_TMP_RE = re.compile(r"^\..+\.tmp-[A-Za-z0-9_]+$")


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
                f"cannot write to --out {str(self.path)!r}: {e.strerror or e}",
                "choose a writable directory",
            ) from None

    def discard(self, *, remove_dir: bool) -> None:
        """Delete every file a run writes here (and the directory when ``remove_dir`` and
        it is then empty): what a start that failed before its first step leaves."""
        if not self.path.is_dir():
            return
        for e in os.scandir(self.path):
            if self._ours(e.name) or e.name == "loss.png":
                with contextlib.suppress(OSError):
                    os.unlink(e.path)
        if remove_dir:
            with contextlib.suppress(OSError):
                self.path.rmdir()

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


def _write_ckpt_file(run: RunDir, step: int, tag: str, kind: str, arrays: dict, out: dict):
    """Write a checkpoint array file; its record entry (the bytes go to ``out[kind]``)."""
    name = f"ckpt-{step:08d}-{tag}.{kind}.safetensors"
    data = arrays_to_bytes(arrays, {"step": str(step), "tag": tag, "kind": kind})
    atomic_write_bytes(run.file(name), data)
    out[kind] = data
    return {"file": name, "sha256": sha256_hex(data)}


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
    (
        canonical_json(trainer_state),
        canonical_json(config),
    )  # fail on non-JSON-able values before writing
    tag = os.urandom(4).hex()
    data: dict = {}
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        record = {
            "format": FORMAT,
            "version": VERSION,
            "step": step,
            "tag": tag,
            "model": _write_ckpt_file(run, step, tag, "model", model_arrays, data),
            "trainer": _write_ckpt_file(run, step, tag, "trainer", trainer_arrays, data),
            "best": (
                _write_ckpt_file(run, step, tag, "best", best_arrays, data)
                if best_arrays is not None
                else _previous_best(run)
            ),
            "config": config,
            "state": trainer_state,
        }
        record["checksum"] = sha256_hex(canonical_json(record).encode("utf-8"))
        atomic_write_json(run.trainer_json_path, record)  # the commit point
        # After the commit: user-facing copies and clean-up (the loader reads none of it).
        # Copies, not hard links: damage to a copy must not reach the checkpoint.
        atomic_write_bytes(run.model_path, data["model"])
        if "best" in data:
            atomic_write_bytes(run.best_path, data["best"])
        atomic_write_json(run.config_path, config)
    except OSError as e:
        raise CheckpointError(
            f"cannot write the checkpoint to {str(run.path)!r}: {e.strerror or e}",
            "check the disk space and permissions",
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
            f"no checkpoint in {str(run.path)!r} (no {RunDir.TRAINER_JSON})",
            "pass the --out directory of a training run",
        )
    rec = read_json(path)
    bad = f"{str(path)!r} is damaged or from another program"
    fix = "restore it or retrain"
    if rec.get("format") != FORMAT or rec.get("version") != VERSION:
        raise CheckpointError(
            f"{str(path)!r} is not an nprnn checkpoint (format {rec.get('format')!r}, "
            f"version {rec.get('version')!r})",
            "pass a run directory made by nprnn train",
        )
    body = {k: v for k, v in rec.items() if k != "checksum"}
    if rec.get("checksum") != sha256_hex(canonical_json(body).encode("utf-8")):
        raise CheckpointError(f"{bad} (its checksum does not match)", fix)
    step, tag = rec.get("step"), rec.get("tag")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{bad} (step {_short(step)})", fix)
    if not isinstance(tag, str) or not re.fullmatch(r"[0-9a-f]{8}", tag):
        raise CheckpointError(f"{bad} (tag {_short(tag)})", fix)
    for key in ("config", "state"):
        if not isinstance(rec.get(key), dict):
            raise CheckpointError(
                f"{bad} ({key!r} must be an object, got {_json_type(rec.get(key))})", fix
            )
    for kind in ("model", "trainer", "best"):
        entry = rec.get(kind)
        if entry is None and kind == "best":
            continue  # no best weights saved (the key may be absent, too)
        if not isinstance(entry, dict):
            raise CheckpointError(
                f"{bad} (entry {kind!r} must be an object, got {_json_type(entry)})", fix
            )
        file, sha = entry.get("file"), entry.get("sha256")
        if not isinstance(file, str):
            raise CheckpointError(
                f"{bad} (entry {kind!r}: 'file' must be a string, got {_json_type(file)})", fix
            )
        m = _CKPT_RE.fullmatch(file)
        if not m or m.group(3) != kind:
            raise CheckpointError(
                f"{bad} (entry {kind!r}: 'file' {_short(file)} is not the name of a {kind} "
                "checkpoint file)",
                fix,
            )
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise CheckpointError(
                f"{bad} (entry {kind!r}: 'sha256' {_short(sha)} is not a SHA-256 hex digest)", fix
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
    fix = "restore the run directory or retrain"
    data = read_bytes(path, f"the checkpoint is incomplete; {fix}")
    if sha256_hex(data) != entry["sha256"]:
        raise CheckpointError(
            f"{str(path)!r} does not match its checksum in trainer.json (corrupted)", fix
        )
    arrays, meta = parse_arrays(data, str(path), fix)
    m = _CKPT_RE.match(entry["file"])
    want = {"step": str(int(m.group(1))), "tag": m.group(2), "kind": kind}
    if any(meta.get(k) != v for k, v in want.items()):
        raise CheckpointError(f"{str(path)!r} belongs to another checkpoint (metadata {meta})", fix)
    return arrays


def load_checkpoint(run: RunDir) -> tuple[dict, dict, dict, dict]:
    """``(config, model_arrays, trainer_arrays, trainer_state)`` of the committed checkpoint."""
    rec = _read_record(run)
    for kind in ("model", "trainer"):
        m = _CKPT_RE.match(rec[kind]["file"])
        if int(m.group(1)) != rec["step"] or m.group(2) != rec["tag"]:
            raise CheckpointError(
                f"{str(run.trainer_json_path)!r} names files of another step",
                "restore the run directory or retrain",
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
            f"{str(run.path)!r} is not a directory", "pass the --out directory of a training run"
        )
    if not run.config_path.is_file():
        raise CheckpointError(
            f"no {RunDir.CONFIG} in {str(run.path)!r}", "pass the --out directory of a training run"
        )
    config = read_json(run.config_path)
    weights = run.best_path if best and run.best_path.is_file() else run.model_path
    return config, load_arrays(weights)


def load_best(run: RunDir) -> dict | None:
    """The best-validation weights of the committed checkpoint, or None if none were saved."""
    rec = _read_record(run)
    entry = rec.get("best")
    return _load_entry(run, entry, "best") if entry else None


# ----------------------------------------------------------------------------- user copies


def _copy_problem(run: RunDir, name: str, entry: dict | None, kind: str) -> str | None:
    """Why the copy ``name`` of the checkpoint file ``entry`` is damaged, or None if it is
    intact, missing or a previous checkpoint's (stale copies are refreshed on resume)."""
    path = run.file(name)
    if entry is None or not path.is_file():
        return None
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    try:
        _, meta = parse_arrays(data, str(path))
    except CheckpointError:
        return "is truncated or not a safetensors file"
    m = _CKPT_RE.match(entry["file"])
    step, tag = int(m.group(1)), m.group(2)
    if meta.get("kind") != kind or not str(meta.get("step", "")).isdigit():
        return f"holds other weights (metadata {meta})"
    if meta.get("tag") == tag:
        return None if sha256_hex(data) == entry["sha256"] else "does not match its checksum"
    if int(meta["step"]) > step:
        return f"is from step {meta['step']}, after the checkpoint (step {step})"
    return None


def check_copies(run: RunDir, record: dict | None = None) -> None:
    """Refuse damaged user copies of the committed checkpoint (see the module docstring).

    ``config.json`` must be a JSON object equal to the checkpoint's config except for its
    ``train`` section (options a resume may change); the weight copies must parse and,
    when they claim the current checkpoint, match its checksums. Raises
    :class:`CheckpointError` naming the file and ``nprnn repair DIR``.
    """
    rec = _read_record(run) if record is None else record
    fix = f"the checkpoint is intact: restore the copies with nprnn repair {run.path}"
    problems = []
    if run.config_path.is_file():
        try:
            cfg = read_json(run.config_path)
        except CheckpointError:
            problems.append((RunDir.CONFIG, "is not a JSON object"))
        else:
            ours = {k: v for k, v in rec["config"].items() if k != "train"}
            if {k: v for k, v in cfg.items() if k != "train"} != ours:
                problems.append((RunDir.CONFIG, "does not match the checkpoint's configuration"))
    for name, kind in ((RunDir.MODEL, "model"), (RunDir.BEST, "best")):
        why = _copy_problem(run, name, rec.get(kind), kind)
        if why is not None:
            problems.append((name, why))
    if problems:
        what = "; ".join(f"{run.file(n)} {why}" for n, why in problems)
        raise CheckpointError(f"damaged run directory: {what}", fix)


def refresh_copies(run: RunDir, record: dict | None = None) -> list[str]:
    """Rewrite the weight copies (``model.safetensors``, ``best.safetensors``) that are
    missing or differ from the committed checkpoint's files; returns their names. The
    checkpoint files themselves are not verified here (the loader does that)."""
    rec = _read_record(run) if record is None else record
    done = []
    for name, kind in ((RunDir.MODEL, "model"), (RunDir.BEST, "best")):
        entry = rec.get(kind)
        if entry is None:
            continue
        path = run.file(name)
        if not path.is_file() or sha256_hex(path.read_bytes()) != entry["sha256"]:
            atomic_write_bytes(path, run.file(entry["file"]).read_bytes())
            done.append(name)
    return done


def repair(run: RunDir) -> list[str]:
    """Rewrite the user copies (``config.json``, ``model.safetensors``, ``best.safetensors``)
    from the committed checkpoint, after verifying it; returns the names rewritten (those
    that differed or were missing)."""
    rec = _read_record(run)
    load_checkpoint(run)  # every file the record names, verified
    if rec.get("best"):
        _load_entry(run, rec["best"], "best")
    done = refresh_copies(run, rec)
    try:
        same = read_json(run.config_path) == rec["config"]
    except CheckpointError:
        same = False
    if not same:
        atomic_write_json(run.config_path, rec["config"])
        done.append(RunDir.CONFIG)
    return done
