"""The ``nprnn`` command line: ``train``, ``sample``, ``eval``, ``bench``.

Exit status: 0 success; 2 bad input — a missing, empty or undecodable file, a bad
option, a corrupted or foreign checkpoint, unseen characters, an unwritable or
occupied ``--out`` — reported as ONE line on stderr, ``nprnn: error: what is wrong —
what to do``, with nothing overwritten; 3 training diverged (the last good checkpoint
is kept; resume with a lower ``--lr``); 130 interrupted by Ctrl-C (a checkpoint of the
current step is saved; continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from dataclasses import fields
from importlib import resources
from pathlib import Path

import numpy as np

from .charlm import MODELS, CharLM
from .runs import CheckpointError, RunDir, load_best, load_checkpoint, load_model
from .text import DataError, Vocab, read_text, split_text, split_train_val
from .train import Trainer, TrainOptions, evaluate, plot_losses

__all__ = ["main", "build_parser"]

EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130
FORMAT = "nprnn-charlm"
BUNDLED = "bundled:first_names.txt"
PLOT = "loss.png"
OPTIMIZERS = ("sgd", "adam", "adamw", "adagrad", "rmsprop")
# options that a resumed run must share with the checkpoint; the others may change
FIXED = (
    "mode",
    "model",
    "hidden",
    "layers",
    "dropout",
    "dtype",
    "batch_size",
    "seq_len",
    "seed",
    "optimizer",
    "val_fraction",
)
CHANGEABLE = ("steps", "lr", "clip", "warmup", "decay", "eval_every", "patience")
TRAIN_KEYS = tuple(f.name for f in fields(TrainOptions) if f.name != "min_lr_ratio")
EPILOG = """exit status: 0 done; 2 bad input (one line on stderr: what is wrong - what to do;
nothing overwritten); 3 training diverged (NaN loss or above 3x the first step's: the last
good checkpoint is kept, resume with a lower --lr); 130 interrupted by Ctrl-C (a checkpoint
of the current step is saved; continue with --resume).
--resume continues bit-identically; options not given are taken from the run; --steps,
--lr, --clip, --warmup, --decay, --eval-every, --patience may change, the others must match."""


class CLIError(Exception):
    """A user error; its message is the one line printed after ``nprnn: error:``."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise CLIError(f"{message} — see '{self.prog} --help'")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):  # no "(default: None)" noise
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _number(kind, low, *, low_open=False, high=None, high_open=True):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        ok = math.isfinite(v) and (v > low if low_open else v >= low)
        if high is not None:
            ok = ok and (v < high if high_open else v <= high)
        if not ok:
            lo = f"> {low}" if low_open else f">= {low}"
            hi = "" if high is None else f" and {'<' if high_open else '<='} {high}"
            raise argparse.ArgumentTypeError(f"must be {lo}{hi}, got {text}")
        return v

    parse.__name__ = kind.__name__
    return parse


POS_INT, NONNEG_INT = _number(int, 1), _number(int, 0)
POS_FLOAT, NONNEG_FLOAT = _number(float, 0.0, low_open=True), _number(float, 0.0)


THREADS = {  # the --threads option of train, sample and eval
    "type": NONNEG_INT,
    "default": 1,
    "help": "BLAS threads; 1 is fastest for the small matrices of a character model "
    "(0: the BLAS library's default)",
}


def build_parser(*, defaults: bool = True) -> argparse.ArgumentParser:
    """The argument parser of ``nprnn`` (train, sample, eval; the others are delegated).

    ``defaults=False`` leaves out the defaults of ``train``'s options, so that parsing
    tells which options the command line gave (a resumed run keeps the others).
    """
    p = _Parser(
        prog="nprnn",
        description="Recurrent networks in NumPy: character language models, sequence "
        "classifiers, long-range memory tasks.",
        formatter_class=_Formatter,
    )
    names = ",".join(["train", "sample", "eval", *DELEGATED])
    sub = p.add_subparsers(dest="command", metavar=f"{{{names}}}", required=True)
    kw = {"formatter_class": _Formatter, "allow_abbrev": False}

    t = sub.add_parser(
        "train",
        help="train a character language model",
        **kw,
        description="Train a character-level language model. With no option: "
        "an LSTM on the bundled first names (lines mode).",
        epilog=EPILOG,
    )

    def a(*names, **options):
        if not defaults and names[0].startswith("--"):
            options["default"] = argparse.SUPPRESS
        t.add_argument(*names, **options)

    a(
        "--task",
        choices=("lm", "classify"),
        default="lm",
        help="lm: a character language model; classify: a sequence classifier on "
        "text<TAB>label lines (its options: nprnn train --task classify --help)",
    )
    a("--data", metavar="FILE", help="training text, UTF-8 (default: the bundled first names)")
    a("--val-data", metavar="FILE", help="validation text (default: hold out --val-fraction)")
    a(
        "--val-fraction",
        type=_number(float, 0.0, low_open=True, high=1.0),
        default=0.1,
        help="share of --data held out for validation (random lines / the text's end)",
    )
    a(
        "--mode",
        choices=("lines", "stream"),
        default="lines",
        help="lines: one sequence per line, padded batches; stream: one text, truncated BPTT",
    )
    a("--model", choices=tuple(MODELS), default="lstm", help="recurrent cell")
    a("--hidden", type=POS_INT, default=128, help="hidden size (also the embedding size)")
    a("--layers", type=POS_INT, default=1, help="recurrent layers")
    a(
        "--dropout",
        type=_number(float, 0.0, high=1.0),
        default=0.1,
        help="dropout between layers and before the output layer",
    )
    a("--batch-size", type=POS_INT, default=64, help="sequences per batch")
    a("--seq-len", type=POS_INT, default=64, help="stream mode: characters per BPTT chunk")
    a("--steps", type=POS_INT, default=2000, help="training steps (optimizer updates)")
    a("--lr", type=POS_FLOAT, default=3e-3, help="peak learning rate")
    a("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer")
    a("--clip", type=NONNEG_FLOAT, default=5.0, help="global gradient-norm clip (0: off)")
    a("--warmup", type=NONNEG_INT, default=50, help="linear learning-rate warmup steps")
    a(
        "--decay",
        choices=("cosine", "linear", "none"),
        default="cosine",
        help="learning-rate decay after warmup, down to 0.1 x --lr at --steps",
    )
    a("--eval-every", type=POS_INT, default=200, help="evaluate and checkpoint every N steps")
    a(
        "--patience",
        type=NONNEG_INT,
        default=4,
        help="stop after N evaluations without improvement (0: never stop early)",
    )
    a("--seed", type=NONNEG_INT, default=0, help="seed of the initialisation, split, shuffling")
    a("--dtype", choices=("float32", "float64"), default="float32", help="float precision")
    a(
        "--out",
        metavar="DIR",
        help="run directory (default: runs/<data>-<model>, e.g. runs/names-lstm)",
    )
    a("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    a("--force", action="store_true", help="replace the run in --out with a new one")
    a("--samples", type=NONNEG_INT, default=5, help="samples to print at the end")
    a("--quiet", action="store_true", help="no progress bar, no per-evaluation lines")
    a("--threads", **THREADS)

    s = sub.add_parser(
        "sample",
        help="generate text from a trained run",
        **kw,
        description="Generate text from the best weights of a run.",
    )
    a = s.add_argument
    a("dir", metavar="DIR", help="run directory written by nprnn train")
    a(
        "--n",
        type=POS_INT,
        help="lines to generate (lines mode, default 10) or characters (stream mode, default 500)",
    )
    a("--temperature", type=POS_FLOAT, default=1.0, help="softmax temperature (< 1: safer)")
    a("--top-k", type=POS_INT, help="sample only among the k most likely characters")
    a("--prime", default="", help="text to start from")
    a("--seed", type=NONNEG_INT, help="seed of the sampler (default: fresh randomness)")
    a("--max-len", type=POS_INT, default=100, help="lines mode: longest line generated")
    a("--checkpoint", choices=("best", "last"), default="best", help="which weights to use")
    a("--threads", **THREADS)

    e = sub.add_parser(
        "eval",
        help="score a text with a trained run",
        **kw,
        description="Print one JSON object: loss (mean cross-entropy, nats per "
        "predicted character), bits_per_char, perplexity (null when it overflows a "
        "float: a loss above ~709.78 nats), mode.",
    )
    a = e.add_argument
    a("dir", metavar="DIR", help="run directory written by nprnn train")
    a("--data", metavar="FILE", required=True, help="text to score, UTF-8")
    a("--mode", choices=("lines", "stream"), help="how to read --data (default: the run's mode)")
    a(
        "--batch-size",
        type=POS_INT,
        default=64,
        help="lines per batch; stream mode: parallel streams, each from a zero state",
    )
    a("--seq-len", type=POS_INT, default=256, help="stream mode: characters per chunk")
    a("--checkpoint", choices=("best", "last"), default="best", help="which weights to use")
    a("--threads", **THREADS)

    for name, (_, _, text) in DELEGATED.items():  # listed here, parsed by their modules
        d = sub.add_parser(name, help=text, add_help=False)
        d.add_argument("rest", nargs=argparse.REMAINDER)
    return p


# Sub-commands whose options live in their own modules: name -> (module, function, help).
DELEGATED = {
    "bench": ("bench", "main", "time the layers against PyTorch"),
    "task": ("tasks", "main", "long-range memory tasks: adding, copy, grad-norms"),
    "predict": ("classify", "main_predict", "label probabilities from a classifier run"),
    "viz": ("viz", "main_viz", "HTML page of a model's activations, character by character"),
    "plot": ("viz", "main_plot", "training and validation loss of a run (PNG)"),
}


def _option(argv, name):
    """The value given to option ``name`` in ``argv`` (``--x v`` or ``--x=v``), or None."""
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _delegate(argv):
    """The function that handles ``argv`` when another module owns it, else None."""
    from importlib import import_module

    cmd = argv[0] if argv else None
    if cmd in DELEGATED:
        module, func, _ = DELEGATED[cmd]
        return getattr(import_module(f"nprnn.app.{module}"), func)
    if cmd == "train" and _option(argv, "--task") == "classify":
        from .classify import main_train

        return main_train
    if cmd == "eval":
        from .classify import is_classifier_run, main_eval

        if any(is_classifier_run(a) for a in argv[1:] if not a.startswith("-")):
            return main_eval
    return None


def main(argv=None) -> int:
    """Run ``nprnn`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        delegate = _delegate(argv)
        if delegate is not None:
            if argv[0] != "bench":  # bench sets threads itself (--threads)
                set_blas_threads(THREADS["default"])
            return delegate(argv[1:])
        args = parser.parse_args(argv)
        if getattr(args, "threads", 0):
            set_blas_threads(args.threads)
        if args.command == "train":
            given = set(vars(build_parser(defaults=False).parse_args(argv)))
            return _cmd_train(args, given)
        if args.command == "sample":
            return _cmd_sample(args)
        return _cmd_eval(args)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:  # outside the training loop (which handles its own)
        print("nprnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError as e:  # a model or batch too large for this machine
        detail = f" ({' '.join(str(e).split())})" if str(e) else ""
        print(
            f"nprnn: error: out of memory{detail} — use a smaller model or batch "
            "(--hidden, --layers, --batch-size, --seq-len, --n)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except (CLIError, DataError, CheckpointError, ValueError, TypeError, OSError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, OSError) and e.filename:
            msg = f"{e.strerror or e} ({e.filename}) — check the path and its permissions"
        elif "—" not in msg and isinstance(e, CheckpointError):
            msg += " — the run directory is damaged or foreign; restore it or retrain"
        elif "—" not in msg:
            msg += " — check the command's options (nprnn --help)"
        print(f"nprnn: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


def set_blas_threads(n: int) -> bool:
    """Limit NumPy's BLAS to ``n`` threads (via threadpoolctl); False if unavailable.

    One recurrent step multiplies small matrices, where BLAS threads cost more than they
    give: one thread is several times faster on a busy machine.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    threadpool_limits(limits=n, user_api="blas")
    return True


# ---------------------------------------------------------------------------- train


def _bundled_text() -> str:
    ref = resources.files("nprnn.app") / "corpora" / "first_names.txt"
    with resources.as_file(ref) as path:
        return read_text(path)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _load_texts(data, val_data):
    """``(train_text, val_text or None, data_label)``."""
    if data is None or data == BUNDLED:
        return (
            _bundled_text(),
            (read_text(val_data, flag="--val-data") if val_data else None),
            BUNDLED,
        )
    text = read_text(data, flag="--data")
    val = read_text(val_data, flag="--val-data") if val_data else None
    return text, val, str(Path(data).resolve())


def _split(text, val_text, mode, val_fraction, seed):
    """Training and validation data as lists of lines (lines mode) or strings (stream)."""
    if mode == "lines":
        lines = [ln for ln in text.split("\n") if ln]
        if val_text is not None:
            return lines, [ln for ln in val_text.split("\n") if ln]
        return split_train_val(lines, val_fraction=val_fraction, seed=seed)
    if val_text is not None:
        return text, val_text
    return split_text(text, val_fraction=val_fraction)


def _cmd_train(args, given: set) -> int:
    out = Path(
        args.out or f"runs/{'names' if args.data is None else Path(args.data).stem}-{args.model}"
    )
    run = RunDir(out)
    prev = _claim_out(run, args)
    if prev is not None:
        _merge_resumed(args, given, prev["config"])
    pdata = prev["config"]["data"] if prev is not None else {}
    data_arg = args.data if args.data is not None else pdata.get("train")
    val_arg = args.val_data if args.val_data is not None else pdata.get("val")
    text, val_text, label = _load_texts(data_arg, val_arg)
    data_cfg = {
        "train": label,
        "val": str(Path(val_arg).resolve()) if val_arg else None,
        "train_sha256": _sha(text),
        "val_sha256": _sha(val_text) if val_text else None,
    }
    for key, flag in (("train_sha256", "--data"), ("val_sha256", "--val-data")):
        if prev is not None and data_cfg[key] != pdata.get(key):
            raise CLIError(
                f"the {flag} text differs from the one the run in {out} was trained "
                "on — pass the same file, or start a new run"
            )
    lines_mode = args.mode == "lines"
    train_data, val_data = _split(text, val_text, args.mode, args.val_fraction, args.seed)
    everything = [*train_data, *val_data] if lines_mode else [train_data, val_data]
    vocab = prev["vocab"] if prev is not None else Vocab.build(everything, lines_mode=lines_mode)
    if lines_mode:  # unseen characters fail now, not after training
        vocab.encode("".join(train_data) + "".join(val_data))
    else:
        train_data, val_data = vocab.encode(train_data), vocab.encode(val_data)
    opts = TrainOptions(**{k: getattr(args, k) for k in TRAIN_KEYS})
    if prev is not None:
        model = prev["model"]
    else:
        model = CharLM(
            len(vocab),
            model=args.model,
            hidden=args.hidden,
            layers=args.layers,
            dropout=args.dropout,
            dtype=np.dtype(args.dtype),
            rng=np.random.default_rng([args.seed, 0]),
        )
    config = {
        "format": FORMAT,
        "version": 1,
        "model": model.config(),
        "vocab": vocab.to_dict(),
        "train": {**opts.to_dict(), "val_fraction": args.val_fraction},
        "data": data_cfg,
    }
    if not lines_mode and len(val_data) < 2:
        raise DataError(
            "the validation text needs at least 2 characters — pass a longer "
            "--val-data or a larger --val-fraction"
        )
    trainer = Trainer(model, vocab, train_data, val_data, opts, run, config)
    run.check_writable()
    if prev is not None:
        try:
            trainer.load_state(prev["trainer_arrays"], prev["trainer_state"])
        except (ValueError, TypeError) as e:
            raise CheckpointError(
                f"cannot resume the run in {out}: {str(e).split(' — ')[0]} — restore the "
                "run directory, or start the run again with --force"
            ) from None
        run.trim_log(trainer.step)  # evaluations logged after this checkpoint happen again
    else:
        if args.force:
            _clear(run)
        trainer.save()  # step 0: the run exists from now on and can always be resumed
    if not opts.quiet:
        n_par = sum(v.size for v in model.params().values())
        print(
            f"{'resuming at step ' + str(trainer.step) if prev else 'training'}: "
            f"{model.model}, hidden {model.hidden} x {model.num_layers} layer(s), "
            f"{n_par:,} parameters, {label.removeprefix('bundled:')} in {args.mode} mode "
            f"-> {out}",
            file=sys.stderr,
        )
    loader = _preload_matplotlib()
    result = trainer.run()
    if loader is not None:
        loader.join()
    plot_losses(run.read_log(), run.path / PLOT)
    return _report(result, run, model, vocab, args)


def _preload_matplotlib():
    """Import matplotlib in a thread while training runs: the import (~0.5 s) then
    overlaps the NumPy work, which releases the GIL, instead of adding to the run."""
    import importlib.util
    import threading

    if importlib.util.find_spec("matplotlib") is None:
        return None

    def load():
        try:
            import matplotlib.figure  # noqa: F401
        except Exception:  # plot_losses reports nothing without it either
            pass

    thread = threading.Thread(target=load, name="nprnn-matplotlib", daemon=True)
    thread.start()
    return thread


def _claim_out(run: RunDir, args):
    """Check that ``--out`` may be used; the run to resume (loaded), or None."""
    out = run.path
    if run.is_run():
        if args.resume:
            return _read_run(run, "resume")
        if not args.force:
            raise CLIError(
                f"--out {out} already holds a run — pass --resume to continue it, "
                "--force to replace it, or choose another --out"
            )
        return None
    if args.resume:
        raise CLIError(f"--resume: {out} holds no run to resume — drop --resume to start one")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file — choose a directory")
    taken = [n for n in (*RunDir.KNOWN, PLOT) if (out / n).exists()]
    if taken and not args.force:
        raise CLIError(
            f"--out {out} holds {', '.join(taken)} that a run would overwrite — "
            "choose another --out, or pass --force"
        )
    return None


def _clear(run: RunDir) -> None:
    """--force: remove the files of the previous run (the new checkpoint follows at once)."""
    for name in (RunDir.TRAINER_JSON, RunDir.BEST, RunDir.LOG, RunDir.MODEL, RunDir.CONFIG, PLOT):
        (run.path / name).unlink(missing_ok=True)


def _merge_resumed(args, given: set, cfg: dict) -> None:
    """Fill the options not given from the run's config; refuse given ones that differ."""
    have = {**cfg["train"], **cfg["model"]}  # checked by _read_run (_check_resume_config)
    for key in FIXED:
        if key in given and getattr(args, key) != have[key]:
            flag = "--" + key.replace("_", "-")
            raise CLIError(
                f"{flag} {getattr(args, key)} does not match the run being resumed "
                f"({flag} {have[key]}) — omit {flag}, or start a new run"
            )
        setattr(args, key, have[key])
    for key in CHANGEABLE:
        if key not in given and key in have:
            setattr(args, key, have[key])


def _report(result, run, model, vocab, args) -> int:
    """Print how training ended, the validation loss and a few samples; the exit status."""
    if result.status == "diverged":
        print(f"nprnn: {result.message}", file=sys.stderr)
        return EXIT_DIVERGED
    if result.status == "interrupted":
        print(f"nprnn: {result.message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.message:
        print(result.message, file=sys.stderr if args.quiet else sys.stdout)
    if result.best_val_loss is not None:
        best, step = result.best_val_loss, result.best_step
        _load_weights(model, run, "best")
    else:
        best, step = result.val_loss, result.step
    ppl = _perplexity(best)
    print(
        f"validation loss {best:.4f} nats/char ({best / math.log(2):.3f} bits/char, "
        f"perplexity {'inf' if ppl is None else f'{ppl:.2f}'}) at step {step}; "
        f"run saved in {run.path}"
    )
    if args.samples:
        mode = "lines" if vocab.lines_mode else "stream"
        rng = np.random.default_rng(args.seed)
        got = model.sample(
            vocab, n=args.samples if mode == "lines" else 300, rng=rng, temperature=0.8, mode=mode
        )
        print("samples (temperature 0.8):")
        print("\n".join("  " + s for s in got) if mode == "lines" else got)
    return 0


# ---------------------------------------------------------------------------- sample / eval


def _read_run(run: RunDir, which: str) -> dict:
    """Load a run: config, vocabulary, model with the chosen weights, trainer state."""
    if not run.is_run():
        raise CLIError(
            f"{run.path} is not a run directory (no config.json) — pass the --out "
            "directory of an nprnn train run"
        )
    tarrays = tstate = None
    if which == "resume":
        cfg, weights, tarrays, tstate = load_checkpoint(run)
        load_best(run)  # verified now: the run ends by sampling from it
    else:
        cfg, weights = load_model(run, best=which == "best")
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise CheckpointError(
            f"{run.path} holds no nprnn character model (config format "
            f"{cfg.get('format') if isinstance(cfg, dict) else None!r}) — "
            "pass a directory written by nprnn train"
        )
    try:
        if "vocab" not in cfg or "model" not in cfg:
            raise ValueError("config.json lacks 'vocab' or 'model'")
        vocab = Vocab.from_dict(cfg["vocab"])
        # the config is compared with the weights before the model is built: a config
        # asking for an enormous model costs nothing (the weights are already in memory)
        CharLM.check_weights(cfg["model"], weights)
        if cfg["model"]["vocab_size"] != len(vocab):
            raise ValueError(f"vocab_size {cfg['model']['vocab_size']} != {len(vocab)} characters")
        model = CharLM.from_config(cfg["model"], weights=weights)
    except (ValueError, TypeError) as e:
        detail = " ".join(str(e).split(" — ")[0].split())
        raise CheckpointError(
            f"the checkpoint in {run.path} does not fit its config ({detail}) — "
            "it is damaged or foreign; retrain with --force"
        ) from None
    if which == "resume":
        try:
            _check_resume_config(cfg, vocab)
        except ValueError as e:
            raise CheckpointError(
                f"the run config in {run.trainer_json_path} is damaged or foreign ({e}) — "
                "restore the run directory, or start the run again with --force"
            ) from None
    return {
        "config": cfg,
        "vocab": vocab,
        "model": model,
        "trainer_arrays": tarrays,
        "trainer_state": tstate,
    }


_HEX64 = frozenset("0123456789abcdef")


def _train_actions() -> dict:
    """``{dest: argparse action}`` of ``nprnn train``'s options."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["train"]._actions}


def _option_ok(action, value) -> bool:
    """Whether ``value`` (from a run's config) is one the option ``action`` accepts."""
    if action.choices is not None:
        return isinstance(value, str) and value in action.choices
    kind = getattr(action.type, "__name__", "")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if kind == "int" and not isinstance(value, int):
        return False
    try:
        action.type(repr(value))  # the option's own parser: type and range
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return False
    return True


def _check_resume_config(cfg: dict, vocab: Vocab) -> None:
    """What ``--resume`` reads from the run's config: the options (as the command line
    would accept them) and the data record; ``ValueError`` naming the first bad field."""
    train, model, data = cfg.get("train"), cfg.get("model"), cfg.get("data")
    for name, section in (("train", train), ("data", data)):
        if not isinstance(section, dict):
            raise ValueError(f"config section {name!r} is missing or not an object")
    actions = _train_actions()
    have = {**train, **model}
    for key in (*FIXED, *CHANGEABLE):
        if key not in have:
            if key in FIXED:
                raise ValueError(f"config lacks {key!r}")
            continue
        if not _option_ok(actions[key], have[key]):
            raise ValueError(f"config {key}={have[key]!r} is not a valid --{key.replace('_', '-')}")
    if (train["mode"] == "lines") != vocab.lines_mode:
        raise ValueError(
            f"config mode {train['mode']!r} does not fit the vocabulary "
            f"(lines_mode {vocab.lines_mode})"
        )

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


def _load_weights(model, run, which) -> None:
    model.load_state_dict(_read_run(run, which)["model"].state_dict())


def _cmd_sample(args) -> int:
    loaded = _read_run(RunDir(Path(args.dir)), args.checkpoint)
    vocab, model = loaded["vocab"], loaded["model"]
    mode = "lines" if vocab.lines_mode else "stream"
    if args.prime:
        vocab.encode(args.prime)  # unseen characters: a DataError naming them
    n = args.n if args.n is not None else (10 if mode == "lines" else 500)
    got = model.sample(
        vocab,
        n=n,
        temperature=args.temperature,
        top_k=args.top_k,
        prime=args.prime,
        rng=args.seed,
        max_len=args.max_len,
        mode=mode,
    )
    print("\n".join(got) if mode == "lines" else got)
    return 0


def _cmd_eval(args) -> int:
    loaded = _read_run(RunDir(Path(args.dir)), args.checkpoint)
    vocab, model = loaded["vocab"], loaded["model"]
    # the run's mode: a lines-mode run has a vocabulary with <bos>/<eos>, a stream run not
    # (config.json's "train" section is not needed: a weights-only directory works too)
    mode = args.mode or ("lines" if vocab.lines_mode else "stream")
    if mode == "lines" and not vocab.lines_mode:
        raise CLIError(
            "--mode lines needs a run trained in lines mode (with start/end tokens) "
            "— use --mode stream"
        )
    text = read_text(args.data, flag="--data")
    if mode == "lines":
        data = [ln for ln in text.split("\n") if ln]
        vocab.encode("".join(data))  # unseen characters: a DataError naming them
    else:
        data = vocab.encode(text)
    loss = evaluate(model, vocab, data, mode=mode, batch_size=args.batch_size, seq_len=args.seq_len)
    res = {"loss": loss, "bits_per_char": loss / math.log(2), "perplexity": _perplexity(loss)}
    # strict JSON: a value that is not a finite number (perplexity above ~1.8e308) is null
    res = {k: v if v is not None and math.isfinite(v) else None for k, v in res.items()}
    print(json.dumps({**res, "mode": mode}, allow_nan=False))
    return 0


def _perplexity(loss: float) -> float | None:
    """exp(loss), or None when it overflows a float (loss above ~709.78 nats)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return None
