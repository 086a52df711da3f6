"""Reading a run directory back: the model, its vocabulary and its config.

:func:`read_run` is what every command uses (``sample``, ``eval``, ``viz``,
``predict``, ``--resume``): it loads the committed checkpoint (or, without one, the
``config.json`` + ``model.safetensors`` of a weights-only directory), checks that the run
is of the kind the command needs, that the user copies are not damaged
(:func:`~nprnn.app.runs.check_copies`), that the config fits the weights before
anything is built, and — for a resume — that every stored option is one the command
line would accept. Anything wrong is a :class:`CheckpointError` naming what and how to
recover.

:func:`load_run` (also ``nprnn.load_run``) is the same for Python::

    run = nprnn.load_run("runs/names-lstm")        # the best weights
    run.model, run.vocab, run.config                # a CharLM (an nprnn Module), Vocab, dict
    run.sample(5, temperature=0.8)                  # five generated lines
    run.score("Maria\\nJohn\\n")                     # {"loss", "bits_per_char", "perplexity"}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CheckpointError, DataError, what_of
from .runs import RunDir, check_copies, load_best, load_checkpoint, load_model

__all__ = [
    "KINDS",
    "Loaded",
    "read_run",
    "load_run",
    "LanguageModelRun",
    "ClassifierRun",
    "perplexity",
]

# the config version each kind of run is written with (--resume reads only that one)
VERSIONS = {"nprnn-charlm": 2, "nprnn-classifier": 2, "nprnn-task": 1}
# config "format" -> (what it is, the command that makes it)
KINDS = {
    "nprnn-charlm": ("a character language model", "nprnn train"),
    "nprnn-classifier": ("a sequence classifier", "nprnn train --task classify"),
    "nprnn-task": ("a long-range task network", "nprnn task adding|copy"),
}
_HEX64 = frozenset("0123456789abcdef")


@dataclass
class Loaded:
    config: dict
    model: object
    vocab: object = None
    trainer_arrays: dict | None = None
    trainer_state: dict | None = None
    extra: dict = field(default_factory=dict)


def _kind_error(path, fmt, want: str) -> CheckpointError:
    what, cmd = KINDS[want]
    if isinstance(fmt, str) and fmt in KINDS and fmt != want:
        got, made_by = KINDS[fmt]
        return CheckpointError(
            f"{path} holds {got} (written by {made_by}), not {what}",
            f"pass a directory written by {cmd}",
        )
    return CheckpointError(
        f"{path} holds no nprnn run (config format {fmt!r})", f"pass a directory written by {cmd}"
    )


def _build(fmt: str, cfg: dict, weights: dict):
    """``(model, vocab, extra)`` from a config and weights; ValueError/TypeError if they
    do not fit (the config is compared with the weights before anything is built)."""
    for key in ("model",) + (("vocab",) if fmt != "nprnn-task" else ()):
        if key not in cfg:
            raise ValueError(f"config.json lacks {key!r}")
    if fmt == "nprnn-charlm":
        from .charlm import CharLM
        from .text import Vocab

        vocab = Vocab.from_dict(cfg["vocab"])
        CharLM.check_weights(cfg["model"], weights)
        if cfg["model"]["vocab_size"] != len(vocab):
            raise ValueError(f"vocab_size {cfg['model']['vocab_size']} != {len(vocab)} tokens")
        return CharLM.from_config(cfg["model"], weights=weights), vocab, {}
    if fmt == "nprnn-classifier":
        from .classifier import SeqClassifier
        from .text import Vocab

        vocab = Vocab.from_dict(cfg["vocab"])
        labels = cfg.get("labels")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ValueError(f"labels {labels!r}")
        model = SeqClassifier.from_config(cfg["model"], weights=weights)
        if model.n_labels != len(labels) or model.vocab_size != len(vocab):
            raise ValueError("the label or vocabulary sizes disagree with the model")
        return model, vocab, {"labels": labels, "majority_label": cfg.get("majority_label")}
    from .tasks import TaskNet

    return TaskNet.from_config(cfg["model"], weights=weights), None, {}


def _check_resume(fmt: str, cfg: dict, vocab) -> None:
    """What ``--resume`` reads from the config: the options (as the command line would
    accept them) and the data record; ``ValueError`` naming the first bad field."""
    from . import options
    from .declare import check_stored

    command = {
        "nprnn-charlm": options.TrainLM,
        "nprnn-classifier": options.TrainClassifier,
        "nprnn-task": options.TaskCopy if cfg.get("task") == "copy" else options.TaskAdding,
    }[fmt]
    sections = (
        ("train", "model", "data") if fmt != "nprnn-task" else ("train", "model", "task_options")
    )
    for name in sections:
        if not isinstance(cfg.get(name), dict):
            raise ValueError(f"config section {name!r} is missing or not an object")
    check_stored(command, cfg)
    if fmt == "nprnn-charlm" and (cfg["train"]["mode"] == "lines") != vocab.lines_mode:
        raise ValueError(
            f"config mode {cfg['train']['mode']!r} does not fit the vocabulary "
            f"(lines_mode {vocab.lines_mode})"
        )
    if fmt == "nprnn-task":
        return
    data = cfg["data"]

    def text(key, nullable):
        v = data.get(key)
        return (v is None and nullable) or (isinstance(v, str) and v != "")

    def sha(key, nullable):
        v = data.get(key)
        return (v is None and nullable) or (
            isinstance(v, str) and len(v) == 64 and set(v) <= _HEX64
        )

    for key, ok in (
        ("train", text("train", False)),
        ("val", text("val", True)),
        ("train_sha256", sha("train_sha256", False)),
        ("val_sha256", sha("val_sha256", True)),
    ):
        if not ok:
            raise ValueError(f"config data.{key}={data.get(key)!r}")
    if (data.get("val") is None) != (data.get("val_sha256") is None):
        raise ValueError("config data.val and data.val_sha256 disagree")


def read_run(run: RunDir, which: str, kind: str = "nprnn-charlm") -> Loaded:
    """Load the run in ``run`` for ``which`` use: ``"best"`` / ``"last"`` weights, or
    ``"resume"`` (the latest weights and the trainer state, the best weights verified,
    the stored options checked). ``kind``: the config format the command needs."""
    if not run.is_run():
        raise CheckpointError(
            f"{run.path} is not a run directory (no config.json)",
            "pass the --out directory of a training run",
        )
    tarrays = tstate = None
    if which == "resume":
        cfg, weights, tarrays, tstate = load_checkpoint(run)
        load_best(run)  # verified now: the run ends by using it
    else:
        cfg, weights = load_model(run, best=which == "best")
    fmt = cfg.get("format") if isinstance(cfg, dict) else None
    if fmt != kind:
        raise _kind_error(run.path, fmt, kind)
    try:
        model, vocab, extra = _build(fmt, cfg, weights)
    except (ValueError, TypeError) as e:
        raise CheckpointError(
            f"the checkpoint in {run.path} does not fit its config "
            f"({what_of(e)}) — it is damaged or foreign",
            "retrain with --force",
        ) from None
    if which == "resume":
        if cfg.get("version") != VERSIONS[fmt]:
            raise CheckpointError(
                f"the run in {run.path} was written by another version of nprnn (config "
                f"version {cfg.get('version')!r}; this one writes {VERSIONS[fmt]})",
                "sample and eval still read it; to train on, start a new run (--force)",
            )
        try:
            _check_resume(fmt, cfg, vocab)
        except ValueError as e:
            raise CheckpointError(
                f"the run config in {run.trainer_json_path} is damaged or foreign ({what_of(e)})",
                "restore the run directory, or start the run again with --force",
            ) from None
    if run.has_checkpoint():  # the record is sound: now the copies a user reads
        check_copies(run)
    return Loaded(cfg, model, vocab, tarrays, tstate, extra)


# ----------------------------------------------------------------------------- Python API


def perplexity(loss: float) -> float | None:
    """exp(loss), or None when it overflows a float (loss above ~709.78 nats)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return None


class LanguageModelRun:
    """A trained character language model: ``model`` (a CharLM), ``vocab``, ``config``."""

    def __init__(self, loaded: Loaded, path: Path):
        self.model, self.vocab, self.config, self.path = (
            loaded.model.eval(),
            loaded.vocab,
            loaded.config,
            path,
        )
        self.mode = "lines" if self.vocab.lines_mode else "stream"

    def __repr__(self) -> str:
        return f"LanguageModelRun({str(self.path)!r}, {self.model.model}, {self.mode} mode)"

    def sample(
        self,
        n: int | None = None,
        *,
        temperature: float = 1.0,
        top_k=None,
        prime: str = "",
        seed=None,
        max_len: int = 100,
    ):
        """``n`` generated lines (lines mode, default 10) or ``prime`` + ``n`` characters
        (stream mode, default 500); ``temperature`` 0 is greedy; see ``nprnn sample``."""
        n = n if n is not None else (10 if self.mode == "lines" else 500)
        return self.model.sample(
            self.vocab,
            n=n,
            temperature=temperature,
            top_k=top_k,
            prime=prime,
            rng=seed,
            max_len=max_len,
            mode=self.mode,
        )

    def score(
        self, text: str, *, mode: str | None = None, batch_size: int = 64, seq_len: int = 256
    ) -> dict:
        """``{"loss", "bits_per_char", "perplexity"}`` of ``text`` as ``nprnn eval``
        computes them (``mode``: how to read it, default the run's)."""
        from .lm import score_text

        total, count = score_text(
            self.model,
            self.vocab,
            text,
            mode=mode or self.mode,
            batch_size=batch_size,
            seq_len=seq_len,
        )
        if count == 0:
            raise DataError(
                "nothing to score: the text holds no predictable character", "pass more text"
            )
        loss = total / count
        return {"loss": loss, "bits_per_char": loss / math.log(2), "perplexity": perplexity(loss)}


class ClassifierRun:
    """A trained sequence classifier: ``model``, ``vocab``, ``labels``, ``config``."""

    def __init__(self, loaded: Loaded, path: Path):
        self.model, self.vocab, self.config, self.path = (
            loaded.model.eval(),
            loaded.vocab,
            loaded.config,
            path,
        )
        self.labels = loaded.extra["labels"]

    def __repr__(self) -> str:
        return f"ClassifierRun({str(self.path)!r}, labels {self.labels})"

    def predict(self, texts) -> list[dict]:
        """For each text, ``{label: probability}``."""
        from .classifier import probabilities

        texts = list(texts)
        if not texts:
            raise DataError("no text to classify", "pass at least one")
        probs = probabilities(self.model, self.vocab, texts)
        return [dict(zip(self.labels, map(float, row), strict=True)) for row in probs]

    def score(self, data) -> dict:
        """The metrics of ``nprnn eval`` on ``data`` (a path or (text, label) pairs)."""
        from .classifier import as_pairs, evaluate_pairs

        return evaluate_pairs(
            self.model,
            self.vocab,
            self.labels,
            self.config.get("majority_label"),
            as_pairs(data, "--data"),
        )


def load_run(path, *, which: str = "best"):
    """The trained model of an ``nprnn train`` run directory (``which``: ``"best"``
    validation weights or the ``"last"`` ones): a :class:`LanguageModelRun` (``.sample``,
    ``.score``) or, for ``--task classify``, a :class:`ClassifierRun` (``.predict``,
    ``.score``). A damaged, foreign or missing run raises :class:`CheckpointError`."""
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    run = RunDir(Path(path))
    from .classify import is_classifier_run

    if is_classifier_run(run.path):
        return ClassifierRun(read_run(run, which, "nprnn-classifier"), run.path)
    return LanguageModelRun(read_run(run, which, "nprnn-charlm"), run.path)
