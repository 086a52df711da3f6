"""The language model's commands: ``nprnn train``, ``sample``, ``eval``, and ``repair``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from . import commands
from .charlm import CharLM
from .declare import check_modes, stored
from .errors import DataError, UsageError
from .lm import LMObjective, prepare, score_text
from .load import VERSIONS, perplexity, read_run
from .memory import available_bytes, check_fits, params_bytes, step_bytes
from .runs import RunDir, repair
from .text import read_text

__all__ = ["cmd_train", "cmd_sample", "cmd_eval", "cmd_repair", "FORMAT", "VERSION"]

FORMAT = "nprnn-charlm"
VERSION = VERSIONS[FORMAT]
SAMPLE_CHARS = 200  # characters per end-of-training sample in stream mode


# ----------------------------------------------------------------------------- train


def _check_memory(opts, data, vocab_size: int) -> None:
    """Refuse (one line, before anything is built) a step that would not fit in memory."""
    shapes = CharLM.param_shapes(
        {
            "vocab_size": vocab_size,
            "model": opts.model,
            "hidden": opts.hidden,
            "layers": opts.layers,
            "dropout": opts.dropout,
            "embedding_dim": None,
            "dtype": opts.dtype,
        }
    )
    n_params = sum(math.prod(s) for s in shapes.values())
    item = np.dtype(opts.dtype).itemsize
    fixed = params_bytes(n_params, itemsize=item, optimizer=opts.optimizer, procs=opts.procs)

    def need(T: int) -> int:
        return fixed + step_bytes(
            cell=opts.model,
            hidden=opts.hidden,
            layers=opts.layers,
            T=T,
            B=opts.batch_size,
            classes_per_step=vocab_size,
            n_params=n_params,
            itemsize=item,
            procs=opts.procs,  # resolved before any build (commands.train)
        )

    lines = opts.mode == "lines"
    T = data.longest + 1 if lines else opts.seq_len
    have = available_bytes()
    if have is None or need(T) <= have:
        return
    model = f"--hidden {opts.hidden} --layers {opts.layers}"
    if need(1) > have:
        fix = f"use a smaller model than {model} ({n_params:,} parameters)"
    elif lines:
        fit = max(1, (have - fixed) // max(need(2) - need(1), 1) - 1)
        fit = int(min(fit, data.longest - 1))
        longer = sum(1 for s in (data.train + data.val) if len(s) > fit) if fit >= 1 else 0
        fix = (
            f"pass --mode stream (one long text, read in chunks of --seq-len), or --max-len "
            f"{fit} to split the {longer} line(s) longer than {fit} characters, or a smaller "
            f"--batch-size ({opts.batch_size}) or model ({model})"
        )
    else:
        fix = (
            f"pass a smaller --seq-len ({opts.seq_len}) or --batch-size ({opts.batch_size}), "
            f"or a smaller model ({model})"
        )
    what = (
        f"a training step on lines of up to {data.longest:,} characters"
        if lines
        else f"a training step of {opts.seq_len} x {opts.batch_size} characters"
    )
    check_fits(need(T), what=f"{what} ({n_params:,} parameters)", fix=fix, available=have)


def _build(opts, given: set, prev):
    check_modes(opts, given, opts.mode)
    if opts.mode == "lines":
        opts.seq_len = None
    else:
        opts.max_len = None
    pdata = prev.config["data"] if prev is not None else {}
    data_arg = opts.data if opts.data is not None else pdata.get("train")
    val_arg = opts.val_data if opts.val_data is not None else pdata.get("val")
    data = prepare(
        data=data_arg,
        val_data=val_arg,
        mode=opts.mode,
        val_fraction=opts.val_fraction,
        seed=opts.seed,
        max_len=opts.max_len,
        vocab=prev.vocab if prev is not None else None,
    )
    for key, fl in (("train_sha256", "--data"), ("val_sha256", "--val-data")):
        if prev is not None and data.record[key] != pdata.get(key):
            raise UsageError(
                f"the {fl} text differs from the one the run in {opts.out} was trained on",
                "pass the same file, or start a new run",
            )
    if opts.mode == "stream":
        L = len(data.train) // opts.batch_size  # characters per stream
        if L >= 2 and opts.seq_len > L - 1:
            if "seq_len" in given:
                raise UsageError(
                    f"--seq-len {opts.seq_len} is longer than the text allows: "
                    f"{opts.batch_size} streams of {L} characters give chunks of "
                    f"at most {L - 1}",
                    f"pass --seq-len {L - 1} or less, or a smaller --batch-size",
                )
            opts.seq_len = L - 1  # the default, recorded as used
    vocab = data.vocab
    _check_memory(opts, data, len(vocab))
    model = (
        prev.model
        if prev is not None
        else CharLM(
            len(vocab),
            model=opts.model,
            hidden=opts.hidden,
            layers=opts.layers,
            dropout=opts.dropout,
            dtype=np.dtype(opts.dtype),
            rng=np.random.default_rng([opts.seed, 0]),
        )
    )
    record = {**data.record, "lines_split": data.n_split}
    config = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.config(),
        "vocab": vocab.to_dict(),
        "train": stored(opts)["train"],
        "data": record,
    }
    objective = LMObjective(
        model,
        vocab,
        data.train,
        data.val,
        mode=opts.mode,
        batch_size=opts.batch_size,
        seq_len=opts.seq_len,
        seed=opts.seed,
    )
    notes = ()
    if data.n_split:
        notes = (
            f"--max-len {opts.max_len}: split {data.n_split} line(s) longer than "
            f"{opts.max_len} characters into pieces",
        )
    n_par = model.num_parameters()
    start = (
        f"{{verb}}: {model.model}, hidden {model.hidden} x {model.num_layers} layer(s), "
        f"{n_par:,} parameters, {data.label} in {opts.mode} mode -> {opts.out}"
    )
    return commands.Built(objective, config, start, notes)


def cmd_train(opts, given: set) -> int:
    """``nprnn train``: a character language model."""
    if opts.out is None:
        stem = "names" if opts.data is None else Path(opts.data).stem
        opts.out = f"runs/{stem}-{opts.model}"
    result, trainer, run, _ = commands.train_and_plot(
        opts,
        given,
        kind=FORMAT,
        out=opts.out,
        build=lambda o, p: _build(o, given, p),
        resume_hint=f"nprnn train --out {opts.out} --resume",
    )
    if not trainer.parallel.writes:  # another MPI rank: rank 0 reports
        return commands.silent_status(result)
    status = commands.exit_status(result, opts.quiet)
    if status is not None:
        return status
    model, vocab = trainer.model, trainer.objective.vocab
    if result.best_val_loss is not None:
        best, step = result.best_val_loss, result.best_step
        model.load_state_dict(read_run(run, "best", FORMAT).model.state_dict())
    else:
        best, step = result.val_loss, result.step
    ppl = perplexity(best)
    print(
        f"validation loss {best:.4f} nats/char ({best / math.log(2):.3f} bits/char, "
        f"perplexity {'inf' if ppl is None else f'{ppl:.2f}'}) at step {step}; "
        f"run saved in {run.path}"
    )
    if opts.samples:
        _print_samples(model, vocab, opts.samples, opts.seed)
    return 0


def _print_samples(model, vocab, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    print("samples (temperature 0.8):")
    if vocab.lines_mode:
        for s in model.generate(vocab, n=n, rng=rng, temperature=0.8):
            print("  " + s, flush=True)
        return
    for i in range(n):
        text = model.sample(vocab, n=SAMPLE_CHARS, rng=rng, temperature=0.8, mode="stream")
        if i:
            print()
        print("\n".join("  " + ln for ln in text.strip("\n").split("\n")), flush=True)


# ----------------------------------------------------------------------------- use a run


def cmd_sample(opts, given: set) -> int:
    """``nprnn sample DIR``: print generated text as it comes; Ctrl-C keeps what is printed."""
    loaded = read_run(RunDir(Path(opts.dir)), opts.checkpoint, FORMAT)
    vocab, model = loaded.vocab, loaded.model
    mode = "lines" if vocab.lines_mode else "stream"
    if opts.prime:
        vocab.encode(opts.prime)  # unseen characters: a DataError naming them
    n = opts.n if opts.n is not None else (10 if mode == "lines" else 500)
    pieces = model.generate(
        vocab,
        n=n,
        temperature=opts.temperature,
        top_k=opts.top_k,
        prime=opts.prime,
        rng=opts.seed,
        max_len=opts.max_len,
        mode=mode,
        chunk=64,
    )
    out = sys.stdout
    try:
        for piece in pieces:
            out.write(piece + "\n" if mode == "lines" else piece)
            out.flush()
    except KeyboardInterrupt:
        if mode == "stream":
            out.write("\n")
        out.flush()
        raise
    if mode == "stream":
        out.write("\n")
    return 0


def cmd_eval(opts, given: set) -> int:
    """``nprnn eval DIR --data FILE``: one JSON object (see ``options.Eval``)."""
    loaded = read_run(RunDir(Path(opts.dir)), opts.checkpoint, FORMAT)
    vocab, model = loaded.vocab, loaded.model
    # a lines-mode run has a vocabulary with <bos>/<eos>, a stream run not (config.json's
    # "train" section is not needed: a weights-only directory works too)
    mode = opts.mode or ("lines" if vocab.lines_mode else "stream")
    text = read_text(opts.data, flag="--data")
    total, count = score_text(
        model, vocab, text, mode=mode, batch_size=opts.batch_size, seq_len=opts.seq_len
    )
    if count == 0:
        raise DataError(
            "nothing to evaluate: --data holds no predictable character", "pass more text"
        )
    loss = total / count
    res = {"loss": loss, "bits_per_char": loss / math.log(2), "perplexity": perplexity(loss)}
    # strict JSON: a value that is not a finite number (perplexity above ~1.8e308) is null
    res = {k: v if v is not None and math.isfinite(v) else None for k, v in res.items()}
    print(json.dumps({**res, "mode": mode}, allow_nan=False))
    return 0


def cmd_repair(opts, given: set) -> int:
    """``nprnn repair DIR``: rewrite the user copies from the committed checkpoint."""
    run = RunDir(Path(opts.dir))
    if not run.has_checkpoint():
        raise UsageError(
            f"{run.path} holds no checkpoint (no trainer.json) to repair from",
            "pass the --out directory of a training run",
        )
    done = repair(run)
    print(f"restored {', '.join(done)} from the checkpoint" if done else "nothing to repair")
    return 0
