"""Every command's options, declared once.

Each command is a dataclass whose fields are its options; a field's metadata (made by
:func:`option`) holds the help text, the parser (type and range, or choices), how
``--resume`` treats it and where ``config.json`` stores it. Everything else is derived:

- :func:`parse` builds the argparse parser (help shows each default), parses argv and
  returns the filled dataclass plus the set of options the command line gave;
- :func:`stored` gives the values a run stores, per ``config.json`` section;
- :func:`merge_resumed` fills the options not given from a run's config and refuses
  given ``fixed`` ones that differ; :func:`check_stored` validates a stored config with
  the options' own parsers (a damaged or hand-edited run is refused before use);
- :func:`markdown_table` renders the README's option tables (a test compares them).

``resume`` is ``"fixed"`` (shapes the run: must match), ``"may change"`` (taken from the
run unless given), ``"content"`` (a data file: may be given again, must hold the same
text) or None (per invocation: not stored).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .errors import UsageError

__all__ = [
    "Num",
    "option",
    "parse",
    "build_parser",
    "given_options",
    "stored",
    "merge_resumed",
    "check_stored",
    "changeable",
    "markdown_table",
    "flag",
    "TrainLM",
    "TrainClassifier",
    "TaskAdding",
    "TaskCopy",
    "GradNorms",
    "Sample",
    "Eval",
    "Predict",
    "Viz",
    "Plot",
    "Bench",
    "Repair",
    "OPTIMIZERS",
    "CELLS",
]

OPTIMIZERS = ("sgd", "adam", "adamw", "adagrad", "rmsprop")
CELLS = ("lstm", "gru", "rnn")
RESUME = ("fixed", "may change", "content", None)


class Num:
    """A number option: ``kind`` (int | float) in a range; parses text and checks values."""

    def __init__(self, kind, low=None, *, low_open=False, high=None, high_open=True):
        self.kind, self.low, self.high = kind, low, high
        self.low_open, self.high_open = low_open, high_open
        self.__name__ = kind.__name__

    def ok(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        if self.kind is int and not isinstance(v, int):
            return False
        if not math.isfinite(v):
            return False
        if self.low is not None and not (v > self.low if self.low_open else v >= self.low):
            return False
        return self.high is None or (v < self.high if self.high_open else v <= self.high)

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high}")
        return " and ".join(parts) or "finite"

    def __call__(self, text: str):
        try:
            v = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.__name__}, got {text!r}") from None
        if not self.ok(v):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text}")
        return v


POS_INT, NONNEG_INT = Num(int, 1), Num(int, 0)
POS_FLOAT, NONNEG_FLOAT = Num(float, 0.0, low_open=True), Num(float, 0.0)
FRACTION = Num(float, 0.0, low_open=True, high=1.0)


def _int_list(text: str) -> list[int]:
    try:
        out = [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        out = []
    if not out:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return out


def _names(choices):
    def parse(text: str) -> list[str]:
        out = [m.strip() for m in text.split(",") if m.strip()]
        if not out or any(m not in choices for m in out):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(choices)}, got {text!r}"
            )
        return out

    parse.__name__ = "list"
    return parse


def option(
    default,
    help: str,
    *,
    type=None,
    choices=None,
    metavar=None,
    resume=None,
    store=None,
    key=None,
    modes=None,
    positional=False,
    nargs=None,
    flags=None,
    shown=None,
    required=False,
    repeat=False,
):
    """A dataclass field declaring one option (see the module docstring).

    ``type``: a parser (:class:`Num`, ...); a bool default without type/choices is an
    on/off flag. ``store``/``key``: the ``config.json`` section and key (key defaults
    to the name). ``modes``: the ``--mode`` values it applies to (given in another mode
    it is an error). ``shown``: the default as help prints it (when it is computed).
    ``repeat``: may be given several times (a list).
    """
    assert resume in RESUME, resume
    meta = dict(
        help=help,
        type=type,
        choices=choices,
        metavar=metavar,
        resume=resume,
        store=store,
        key=key,
        modes=modes,
        positional=positional,
        nargs=nargs,
        flags=flags,
        shown=shown,
        required=required,
        repeat=repeat,
    )
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def flag(name: str) -> str:
    """The command-line spelling of option ``name``: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


def _is_switch(f) -> bool:
    m = f.metadata
    return isinstance(_default(f), bool) and m["type"] is None and m["choices"] is None


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(message, f"see '{self.prog} --help'")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _help(f) -> str:
    m, d = f.metadata, _default(f)
    text = m["help"]
    shown = m["shown"] if m["shown"] is not None else d
    if not _is_switch(f) and shown not in (None, []) and not m["positional"]:
        text += f" (default: {shown})"
    return text


def add_options(p: argparse.ArgumentParser, cls) -> None:
    """Add ``cls``'s options to ``p``; defaults are left out (see :func:`parse`)."""
    for f in fields(cls):
        m = f.metadata
        kw: dict[str, Any] = {"help": _help(f)}
        if m["positional"]:
            if m["nargs"]:
                kw["nargs"] = m["nargs"]
            p.add_argument(f.name, metavar=m["metavar"] or f.name.upper(), **kw)
            continue
        kw["default"] = argparse.SUPPRESS
        kw["dest"] = f.name
        if _is_switch(f):
            kw["action"] = "store_true"
        else:
            if m["repeat"]:
                kw["action"] = "append"
            if m["type"] is not None:
                kw["type"] = m["type"]
            if m["choices"] is not None:
                kw["choices"] = m["choices"]
            if m["metavar"]:
                kw["metavar"] = m["metavar"]
            if m["required"]:
                kw["required"] = True
        p.add_argument(*(m["flags"] or (flag(f.name),)), **kw)


def build_parser(cls, prog: str) -> argparse.ArgumentParser:
    """The parser of command ``cls`` (its docstring is the description)."""
    doc = (cls.__doc__ or "").strip()
    desc, _, epilog = doc.partition("\n\n")
    p = _Parser(
        prog=prog,
        description=" ".join(desc.split()),
        epilog=epilog or None,
        formatter_class=_Formatter,
        allow_abbrev=False,
    )
    add_options(p, cls)
    return p


def given_options(parsed: dict, cls) -> set:
    """The names of the options the command line gave (positionals count as given)."""
    return {f.name for f in fields(cls) if f.name in parsed}


def parse(cls, argv, prog: str):
    """``(options, given)``: ``cls`` filled from ``argv`` (defaults for the rest) and the
    set of option names the command line gave. ``--help`` raises ``SystemExit(0)``."""
    ns = vars(build_parser(cls, prog).parse_args(list(argv)))
    return cls(**ns), given_options(ns, cls)


# ----------------------------------------------------------------------------- config


def stored(opts) -> dict:
    """``{section: {key: value}}`` of the options ``opts`` stores in ``config.json``."""
    out: dict = {}
    for f in fields(opts):
        m = f.metadata
        if m["store"] is not None:
            out.setdefault(m["store"], {})[m["key"] or f.name] = getattr(opts, f.name)
    return out


def changeable(cls) -> list[str]:
    """The flags ``--resume`` lets change (resume == "may change")."""
    return [flag(f.name) for f in fields(cls) if f.metadata["resume"] == "may change"]


def _lookup(cfg: dict, f):
    m = f.metadata
    section = cfg.get(m["store"])
    if not isinstance(section, dict):
        return MISSING
    return section.get(m["key"] or f.name, MISSING)


def check_stored(cls, cfg: dict) -> None:
    """``ValueError`` naming the first stored option of ``cls`` in ``cfg`` that is missing
    or that the option itself would refuse (its parser, its choices)."""
    for f in fields(cls):
        m = f.metadata
        if m["store"] is None or m["resume"] not in ("fixed", "may change"):
            continue
        v = _lookup(cfg, f)
        if v is MISSING:
            raise ValueError(f"config lacks {m['key'] or f.name!r}")
        if m["modes"] is not None and v is None:
            continue  # an option that does not apply to the run's mode
        if m["choices"] is not None:
            ok = isinstance(v, str) and v in m["choices"]
        elif isinstance(m["type"], Num):
            ok = m["type"].ok(v)
        elif _is_switch(f):
            ok = isinstance(v, bool)
        else:
            ok = v is None or isinstance(v, str)
        if not ok:
            raise ValueError(f"config {m['key'] or f.name}={v!r} is not a valid {flag(f.name)}")


def merge_resumed(opts, given: set, cfg: dict) -> None:
    """Fill the options not given from the run's config (checked by :func:`check_stored`);
    a given ``fixed`` option that differs raises :class:`UsageError`."""
    for f in fields(opts):
        m = f.metadata
        if m["resume"] not in ("fixed", "may change"):
            continue
        have = _lookup(cfg, f)
        if have is MISSING or (have is None and m["modes"] is not None):
            continue  # (an option of another mode than the run's: check_modes tells)
        if f.name in given:
            if m["resume"] == "fixed" and getattr(opts, f.name) != have:
                fl = flag(f.name)
                raise UsageError(
                    f"{fl} {getattr(opts, f.name)} does not match the run being resumed "
                    f"({fl} {have})",
                    f"omit {fl}, or start a new run",
                )
        else:
            setattr(opts, f.name, have)


def check_modes(opts, given: set, mode: str) -> None:
    """Refuse given options that do nothing in ``mode`` (``option(modes=...)``)."""
    for f in fields(opts):
        modes = f.metadata["modes"]
        if modes is not None and mode not in modes and f.name in given:
            fl = flag(f.name)
            raise UsageError(
                f"{fl} applies to --mode {' or '.join(modes)} only, and this run is in {mode} mode",
                f"drop {fl}, or pass --mode {modes[0]}",
            )


# ----------------------------------------------------------------------------- README


def markdown_table(cls) -> str:
    """The README's table of ``cls``'s options: option, default, on ``--resume``, meaning."""
    rows = ["| option | default | `--resume` | what it does |", "|---|---|---|---|"]
    for f in fields(cls):
        m = f.metadata
        if m["positional"]:
            continue
        name = " ".join(m["flags"] or (flag(f.name),))
        d = m["shown"] if m["shown"] is not None else _default(f)
        d = "" if d is None or (_is_switch(f) and d is False) else f"`{d}`"
        if m["choices"] is not None:
            name += " " + "\\|".join(m["choices"])
        resume = {"fixed": "must match", "may change": "may change", "content": "same text"}
        text = m["help"].replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{name}` | {d} | {resume.get(m['resume'], '')} | {text} |")
    return "\n".join(rows)


README_TABLES = {"train": "TrainLM", "train --task classify": "TrainClassifier"}


# ----------------------------------------------------------------------------- commands


def run_dir(help="run directory written by nprnn train"):
    return option(None, help, positional=True, metavar="DIR")


def threads():
    return option(
        1,
        "BLAS threads; 1 is fastest for the small matrices of a character model "
        "(0: the BLAS library's default)",
        type=NONNEG_INT,
    )


def checkpoint():
    return option(
        "best",
        "which weights to use: the best validation loss, or the latest",
        choices=("best", "last"),
    )


def cell():
    return option("lstm", "recurrent cell", choices=CELLS, resume="fixed", store="model")


def dtype():
    return option(
        "float32", "float precision", choices=("float32", "float64"), resume="fixed", store="model"
    )


def steps(default=2000, help="training steps (optimizer updates)"):
    return option(default, help, type=POS_INT, resume="may change", store="train")


def lr(default=3e-3, help="peak learning rate"):
    return option(default, help, type=POS_FLOAT, resume="may change", store="train")


def optimizer():
    return option("adam", "optimizer", choices=OPTIMIZERS, resume="fixed", store="train")


def clip(default=5.0):
    return option(
        default,
        "global gradient-norm clip (0: off)",
        type=NONNEG_FLOAT,
        resume="may change",
        store="train",
    )


def warmup(default=50):
    return option(
        default,
        "linear learning-rate warmup steps (the default is at most --steps; "
        "a larger value given is an error)",
        type=NONNEG_INT,
        resume="may change",
        store="train",
    )


def decay(default="cosine"):
    return option(
        default,
        "learning-rate decay after warmup, down to 0.1 x --lr at --steps",
        choices=("cosine", "linear", "none"),
        resume="may change",
        store="train",
    )


def eval_every(default=200, help="evaluate and checkpoint every N steps"):
    return option(default, help, type=POS_INT, resume="may change", store="train")


def patience(default=4):
    return option(
        default,
        "stop after N evaluations without improvement (0: never stop early)",
        type=NONNEG_INT,
        resume="may change",
        store="train",
    )


def seed(help="seed of the initialisation, split, shuffling and dropout"):
    return option(0, help, type=NONNEG_INT, resume="fixed", store="train")


def out(help):
    return option(None, help, metavar="DIR")


def resume():
    return option(False, "continue the run in --out exactly where it stopped")


def force():
    return option(False, "replace the run in --out with a new one")


def quiet(help="no progress bar, no per-evaluation lines"):
    return option(False, help)


# the options the training loop reads (train.LoopOptions), in every command that trains
LOOP = ("steps", "lr", "optimizer", "clip", "warmup", "decay", "eval_every", "patience", "quiet")


@dataclass
class TrainLM:
    """Train a character-level language model. With no option: an LSTM on the bundled
    first names (lines mode).

    exit status: 0 done; 2 bad input (one line on stderr: what is wrong - what to do;
    nothing overwritten); 3 training diverged (NaN loss or above 3x the first step's: the
    last good checkpoint is kept, resume with a lower --lr); 130 interrupted by Ctrl-C (a
    checkpoint of the current step is saved; continue with --resume).
    --resume continues bit-identically; options not given are taken from the run; those
    the README marks 'may change' may change, the others must match."""

    task: str = option(
        "lm",
        "lm: a character language model; classify: a sequence classifier "
        "on text<TAB>label lines (its options: nprnn train --task classify "
        "--help)",
        choices=("lm", "classify"),
    )
    data: str | None = option(
        None,
        "training text, UTF-8 (default: the bundled first names)",
        metavar="FILE",
        resume="content",
    )
    val_data: str | None = option(
        None, "validation text (default: hold out --val-fraction)", metavar="FILE", resume="content"
    )
    val_fraction: float = option(
        0.1,
        "share of --data held out for validation (random lines / the text's end)",
        type=FRACTION,
        resume="fixed",
        store="train",
    )
    mode: str = option(
        "lines",
        "lines: one sequence per line, padded batches; stream: one text, truncated BPTT",
        choices=("lines", "stream"),
        resume="fixed",
        store="train",
    )
    max_len: int | None = option(
        None,
        "lines mode: split lines longer than N characters into pieces of N (and say how many)",
        type=POS_INT,
        metavar="N",
        resume="fixed",
        store="train",
        modes=("lines",),
    )
    seq_len: int | None = option(
        64,
        "stream mode: characters per BPTT chunk (the default is "
        "at most the stream length; a larger value given is an "
        "error)",
        type=POS_INT,
        resume="fixed",
        store="train",
        modes=("stream",),
    )
    model: str = cell()
    hidden: int = option(
        128, "hidden size (also the embedding size)", type=POS_INT, resume="fixed", store="model"
    )
    layers: int = option(1, "recurrent layers", type=POS_INT, resume="fixed", store="model")
    dropout: float = option(
        0.1,
        "dropout between layers and before the output layer",
        type=Num(float, 0.0, high=1.0),
        resume="fixed",
        store="model",
    )
    dtype: str = dtype()
    batch_size: int = option(64, "sequences per batch", type=POS_INT, resume="fixed", store="train")
    steps: int = steps()
    lr: float = lr()
    optimizer: str = optimizer()
    clip: float = clip()
    warmup: int = warmup()
    decay: str = decay()
    eval_every: int = eval_every()
    patience: int = patience()
    seed: int = seed()
    out: str | None = out("run directory (default: runs/<data>-<model>, e.g. runs/names-lstm)")
    resume: bool = resume()
    force: bool = force()
    samples: int = option(
        5,
        "samples to print at the end (lines, or texts of 200 characters in stream mode)",
        type=NONNEG_INT,
    )
    quiet: bool = quiet()
    threads: int = threads()


@dataclass
class TrainClassifier:
    """Train a sequence classifier on 'text<TAB>label' lines (default: the bundled first
    names and genders). Prints one JSON line of metrics of the best weights.

    exit status as for nprnn train: 0; 2 bad input; 3 diverged; 130 Ctrl-C (a checkpoint
    is saved; continue with --resume)."""

    task: str = option("classify", "what to train", choices=("classify",))
    data: str = option(
        "bundled:first_names_gender.tsv",
        "training file of text<TAB>label lines, UTF-8",
        metavar="FILE",
        resume="content",
    )
    val_data: str | None = option(
        None,
        "validation file (default: hold out --val-fraction of --data)",
        metavar="FILE",
        resume="content",
    )
    val_fraction: float = option(
        0.1, "share of --data held out for validation", type=FRACTION, resume="fixed", store="train"
    )
    test_fraction: float = option(
        0.0,
        "share of --data held out first as a test set, never used in training",
        type=Num(float, 0.0, high=1.0),
        resume="fixed",
        store="train",
    )
    model: str = cell()
    hidden: int = option(
        64, "hidden size (also the embedding size)", type=POS_INT, resume="fixed", store="model"
    )
    layers: int = option(1, "recurrent layers", type=POS_INT, resume="fixed", store="model")
    bidirectional: bool = option(False, "read the text both ways", resume="fixed", store="model")
    dropout: float = option(
        0.3,
        "dropout between layers and before the head",
        type=Num(float, 0.0, high=1.0),
        resume="fixed",
        store="model",
    )
    dtype: str = dtype()
    batch_size: int = option(64, "texts per batch", type=POS_INT, resume="fixed", store="train")
    steps: int = steps()
    lr: float = lr()
    optimizer: str = optimizer()
    clip: float = clip()
    warmup: int = warmup()
    decay: str = decay()
    eval_every: int = eval_every()
    patience: int = patience(0)
    seed: int = seed()
    out: str | None = out("run directory (default: runs/<data>-<model>)")
    resume: bool = resume()
    force: bool = force()
    quiet: bool = quiet("no per-evaluation lines on stderr")
    threads: int = threads()


@dataclass
class _Task:
    model: str = cell()
    T: int = option(
        None,
        "sequence length (adding) / blanks between the symbols and the delimiter (copy)",
        type=NONNEG_INT,
        flags=("--T",),
        required=True,
        resume="fixed",
        store="task_options",
    )
    hidden: int = option(128, "hidden size", type=POS_INT, resume="fixed", store="model")
    batch_size: int = option(64, "sequences per step", type=POS_INT, resume="fixed", store="train")
    steps: int = steps(3000, "training steps")
    lr: float = lr(3e-3, "learning rate")
    optimizer: str = optimizer()
    clip: float = clip(1.0)
    warmup: int = warmup(0)
    decay: str = decay("none")
    eval_every: int = eval_every(250, "evaluate on the held-out set and checkpoint every N steps")
    patience: int = patience(0)
    seed: int = seed("seed of the weights and the data")
    out: str | None = out("run directory (default: runs/<task>-<model>-T<T>)")
    resume: bool = resume()
    force: bool = force()
    quiet: bool = quiet("no progress lines on stderr")
    threads: int = threads()


@dataclass
class TaskAdding(_Task):
    """The adding problem: the sum of the two marked values. Ends with one JSON line:
    mse and baseline_mse (of always predicting 1) on 1,000 held-out sequences."""


@dataclass
class TaskCopy(_Task):
    """Copy memory: repeat S symbols after T blanks. Ends with one JSON line: accuracy
    and baseline_accuracy (1/A) on 1,000 held-out sequences."""

    symbols: int = option(
        8, "S, symbols to copy", type=POS_INT, resume="fixed", store="task_options"
    )
    alphabet: int = option(
        8, "A, alphabet size", type=Num(int, 2), resume="fixed", store="task_options"
    )


@dataclass
class GradNorms:
    """Plot ||dL/dh_t|| against t on the adding problem, one curve per cell. Ends with one
    JSON line."""

    models: list = option(
        ["rnn", "lstm", "gru"],
        "comma-separated cells to compare",
        type=_names(CELLS),
        shown="rnn,lstm,gru",
    )
    T: int = option(100, "sequence length", type=Num(int, 2), flags=("--T",))
    hidden: int = option(64, "hidden size", type=POS_INT)
    steps: int = option(
        0, "adding-problem training steps before measuring (0: at initialisation)", type=NONNEG_INT
    )
    batch_size: int = option(64, "sequences per step", type=POS_INT)
    seed: int = option(0, "seed of the weights and the data", type=NONNEG_INT)
    out: str = option("grad_norms.png", "PNG to write", metavar="FILE")
    no_plot: bool = option(False, "only print the JSON summary")


@dataclass
class Sample:
    """Generate text from the weights of a language-model run, printed as it is generated
    (Ctrl-C keeps what was printed)."""

    dir: str = run_dir()
    n: int | None = option(
        None,
        "lines to generate (lines mode) or characters (stream mode)",
        type=POS_INT,
        shown="10 lines / 500 characters",
    )
    temperature: float = option(
        1.0,
        "softmax temperature (< 1: safer; 0: greedy, always the most likely)",
        type=NONNEG_FLOAT,
    )
    top_k: int | None = option(None, "sample only among the k most likely characters", type=POS_INT)
    prime: str = option("", "text to start from")
    seed: int | None = option(
        None, "seed of the sampler (default: fresh randomness)", type=NONNEG_INT
    )
    max_len: int = option(100, "lines mode: longest line generated", type=POS_INT)
    checkpoint: str = checkpoint()
    threads: int = threads()


@dataclass
class Eval:
    """Print one JSON object: loss (mean cross-entropy, nats per predicted character),
    bits_per_char, perplexity (null when it overflows a float: a loss above ~709.78
    nats), mode. On a classifier run: accuracy, per-class precision and recall, the
    confusion matrix.

    --mode lines: every line is read as start + characters, predicting characters + end,
    each line from a zero state (a stream run uses its newline as start and end).
    --mode stream: the text is one sequence, the state carried across lines (a lines run
    reads each newline as its end-of-line token)."""

    dir: str = run_dir()
    data: str = option(
        None,
        "text to score, UTF-8 (a classifier run: text<TAB>label lines)",
        metavar="FILE",
        required=True,
    )
    mode: str | None = option(
        None, "how to read --data (default: the run's mode)", choices=("lines", "stream")
    )
    batch_size: int = option(
        64, "lines per batch; stream mode: parallel streams, each from a zero state", type=POS_INT
    )
    seq_len: int = option(256, "stream mode: characters per chunk", type=POS_INT)
    checkpoint: str = checkpoint()
    threads: int = threads()


@dataclass
class Predict:
    """Label texts with a trained classifier; prints one JSON line per text: the text,
    the most likely label and all probabilities."""

    dir: str = option(
        None, "run directory of nprnn train --task classify", positional=True, metavar="DIR"
    )
    texts: list = option(None, "texts to classify", positional=True, nargs="+", metavar="TEXT")
    checkpoint: str = checkpoint()


@dataclass
class Viz:
    """Show, character by character, hidden units (or gates) of a trained character
    language model as a self-contained HTML page."""

    dir: str = run_dir()
    text: str = option(
        None, "the text to read (made of characters the run was trained on)", required=True
    )
    units: list | None = option(
        None, "comma-separated unit indices (default: the most varying)", type=_int_list
    )
    gate: str = option(
        "h",
        "what to show: state h, LSTM cell c / gates i f g o, GRU gates r z n",
        choices=("h", "c", "i", "f", "g", "o", "r", "z", "n"),
    )
    layer: int = option(-1, "which layer (negative: from the last)", type=Num(int))
    top: int = option(8, "without --units: how many units to show", type=POS_INT)
    checkpoint: str = checkpoint()
    out: str = option("viz.html", "HTML file to write", metavar="FILE")


@dataclass
class Plot:
    """Plot the training and validation loss of a run against the step (from its
    log.jsonl) as a PNG."""

    dir: str = option(None, "run directory (holds log.jsonl)", positional=True, metavar="DIR")
    out: str | None = option(None, "PNG to write (default: DIR/loss.png)", metavar="FILE")


@dataclass
class Bench:
    """Time one float32 training step (forward + backward, F = H) per shape, against the
    GEMM floor, torch.nn (if installed) and the notebook's algorithm."""

    repeat: int = option(5, "timed runs per measurement (median)", type=POS_INT)
    json: bool = option(False, "print JSON instead of a table")
    no_notebook: bool = option(False, "skip the notebook reference")
    no_torch: bool = option(False, "skip torch even if installed")
    cell: list | None = option(None, "only these cells (repeatable)", choices=CELLS, repeat=True)
    threads: int = option(
        0, "BLAS threads for NumPy and torch alike (0: each library's default)", type=NONNEG_INT
    )


@dataclass
class Repair:
    """Rewrite a run's config.json, model.safetensors and best.safetensors from its
    committed checkpoint (after checking it), when one of them is damaged or missing."""

    dir: str = run_dir()


def main(argv=None) -> int:
    """``python -m nprnn.app.options``: print the README's option tables."""
    for title, name in README_TABLES.items():
        print(f"<!-- options: {title} -->\n{markdown_table(globals()[name])}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
