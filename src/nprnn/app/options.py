"""Every command's options, declared once (the dataclasses below).

A field is one option: its default, help, parser, whether ``--resume`` may change it and
where ``config.json`` stores it (see :mod:`.declare`, which derives the argparse parsers,
the stored config, the resume checks and the documentation's option tables from these).
Options every training command shares (the loop's) are made by the small functions
below, so that each command lists its options in the order ``--help`` shows them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .declare import (
    FRACTION,
    NONNEG_FLOAT,
    NONNEG_INT,
    POS_FLOAT,
    POS_INT,
    Num,
    int_list,
    markdown_table,
    name_list,
    option,
)
from .models import MODELS

__all__ = [
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
    "LOOP",
    "OPTIMIZERS",
    "CELLS",
    "README_TABLES",
    "TABLE_PAGES",
    "readme_tables",
]

OPTIMIZERS = ("sgd", "adam", "adamw", "adagrad", "rmsprop")
CELLS = tuple(MODELS)  # the cells the toolkit offers (models.py)
README_TABLES = {"train": "TrainLM", "train --task classify": "TrainClassifier"}
"""The commands whose option tables the documentation holds, title -> declaration."""
TABLE_PAGES = {"train": "docs/guides/cli.md", "train --task classify": "docs/guides/beyond-lm.md"}
"""Where each table of :data:`README_TABLES` lives, relative to the repository root."""


def run_dir(help="run directory written by nprnn train"):
    return option(None, help, positional=True, metavar="DIR")


def threads(*, stored=False):
    """``stored``: a training command's, kept in the run's config, since the BLAS thread
    count changes the last bits of the GEMMs (OpenBLAS splits long sums differently)."""
    return option(
        1,
        "BLAS threads (0: the BLAS library's default); 1 stays fast on a busy machine, "
        "where BLAS threads that spin on small matrices can be several times slower"
        + ("; a resume takes the run's, and another value changes the last bits" if stored else ""),
        type=NONNEG_INT,
        resume="may change" if stored else None,
        store="train" if stored else None,
        missing_ok=stored,
    )


def procs():
    """Stored like ``threads``: the count changes the last bits (summation order)."""
    return option(
        0,
        "processes that train together on this machine, each on --batch-size/N rows of "
        "every batch, the gradients averaged in shared memory (Linux); 0: one per usable "
        "core (per --threads cores) with at least 16 rows each (1 with --threads 0, or in "
        "a process running other threads, such as a notebook's). A resume takes the run's, "
        "and another value changes the last bits",
        type=NONNEG_INT,
        metavar="N",
        resume="may change",
        store="train",
        missing_ok=True,
        before=1,  # runs from before --procs trained in one process
    )


def checkpoint():
    return option(
        "best",
        "which weights to use: the best validation loss, or the latest",
        choices=("best", "last"),
    )


def cell():
    return option("lstm", "recurrent cell", choices=CELLS, resume="fixed", store="model")


def device(
    help="where to compute: cpu (NumPy) or cuda (CuPy on an NVIDIA GPU; needs "
    "pip install 'nprnn[cupy]')",
):
    return option("cpu", help, choices=("cpu", "cuda"), resume="may change")


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

    data-parallel: --procs N trains in N processes on this machine (by default one per
    core); mpiexec -n N nprnn train ... (pip install 'nprnn[mpi]') across machines.
    Either splits every batch of --batch-size over the N processes (it must be
    divisible by N) and gives the result one process gives, to float summation order;
    rank 0 writes --out; a failing process ends the run."""

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
    threads: int = threads(stored=True)
    procs: int = procs()
    device: str = device()


@dataclass
class TrainClassifier:
    """Train a sequence classifier on 'text<TAB>label' lines (default: the bundled first
    names and genders). Prints one JSON line of metrics of the best weights.

    exit status as for nprnn train: 0; 2 bad input; 3 diverged; 130 Ctrl-C (a checkpoint
    is saved; continue with --resume). --procs N and mpiexec -n N as for nprnn train."""

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
    threads: int = threads(stored=True)
    procs: int = procs()


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
    threads: int = threads(stored=True)
    procs: int = procs()


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
        type=name_list(CELLS),
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
        None, "comma-separated unit indices (default: the most varying)", type=int_list
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
    GEMM floor, torch.nn (if installed) and the notebook's algorithm; then generation
    and the char-LM training step against torch doing the same work."""

    repeat: int = option(5, "timed runs per measurement (median)", type=POS_INT)
    json: bool = option(False, "print JSON instead of a table")
    no_notebook: bool = option(False, "skip the notebook reference")
    no_torch: bool = option(False, "skip torch even if installed")
    no_workloads: bool = option(False, "skip the generation and char-LM training rows")
    cell: list | None = option(None, "only these cells (repeatable)", choices=CELLS, repeat=True)
    threads: int = option(
        0, "BLAS threads for NumPy and torch alike (0: each library's default)", type=NONNEG_INT
    )
    device: str = device(
        "cpu, or cuda: the LSTM/GRU/RNN training-step rows on the GPU (CuPy) plus "
        "(H=1024, B=256, T=100) against torch.nn.LSTM on cuda (cuDNN)"
    )


@dataclass
class Repair:
    """Rewrite a run's config.json, model.safetensors and best.safetensors from its
    committed checkpoint (after checking it), when one of them is damaged or missing."""

    dir: str = run_dir()


def readme_tables(text: str) -> str:
    """``text`` (a Markdown page) with each ``<!-- options: COMMAND -->`` ...
    ``<!-- /options -->`` block filled with the table of that command's options
    (:data:`README_TABLES`; the pages that hold them: :data:`TABLE_PAGES`)."""
    out, rest = [], text
    while "<!-- options: " in rest:
        before, _, after = rest.partition("<!-- options: ")
        title, _, after = after.partition(" -->")
        _, end, after = after.partition("<!-- /options -->")
        if not end:
            raise ValueError(f"'<!-- options: {title} -->' has no '<!-- /options -->'")
        table = markdown_table(globals()[README_TABLES[title]])
        out += [before, f"<!-- options: {title} -->\n{table}\n<!-- /options -->"]
        rest = after
    return "".join(out) + rest


def main(argv=None) -> int:
    """``python -m nprnn.app.options [PAGE.md ...]``: print the option tables, or fill them
    into the given Markdown pages in place (``python -m nprnn.app.options docs/guides/cli.md
    docs/guides/beyond-lm.md``, the pages of :data:`TABLE_PAGES`)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        from pathlib import Path

        for arg in argv:
            path = Path(arg)
            path.write_text(readme_tables(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    for title, name in README_TABLES.items():
        print(f"<!-- options: {title} -->\n{markdown_table(globals()[name])}\n<!-- /options -->")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
