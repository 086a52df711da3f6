"""nprnn's ``train`` CLI against a PyTorch char-LM of the same size, on the same data.

Runs, one after the other (never at the same time):

1. ``python -m nprnn train ... --out TMP --quiet --threads 1`` as a subprocess, timed
   as a whole (wall clock: interpreter start, imports, data, training, the periodic
   evaluations and checkpoints, the final sample and plot; nprnn's bytecode cache is
   written first, as ``pip install`` writes it), then
   ``python -m nprnn eval TMP --data VAL --checkpoint last|best`` for its held-out loss;
2. a PyTorch model Embedding(V, H) -> LSTM/GRU/RNN(H, H, layers) -> Dropout -> Linear(H, V)
   trained in this process on exactly the batches nprnn draws: the same
   ``split_train_val`` split, the same ``Vocab``, the same ``LinesBatcher`` (seeded as
   the CLI seeds it), the same learning-rate schedule (nprnn's ``LRSchedule``), the
   same optimizer defaults, global-norm clipping, dropout rate and evaluation cadence
   (``--eval-every``). By default torch starts from nprnn's initial weights (the CLI's
   ``CharLM`` rebuilt with the same seed; the parameter names are PyTorch's), so the
   only differences are float rounding and the dropout masks' random draws.

The held-out loss is the one ``nprnn eval`` reports: mean cross-entropy in nats per
predicted token over the validation lines, each line read as <bos>+chars -> chars+<eos>
(stream mode: the last --val-fraction of the text, scored as the trainer scores it).
nprnn runs at the CLI's defaults: one BLAS thread per process (``--threads 1``;
``--nprnn-threads`` to change it) and one process per core with at least 16 rows of
the batch each (``--procs 0``; ``--nprnn-procs 1`` for one process); torch at one
thread (``torch.set_num_threads(1)``), or at its own default with ``--torch-threads 0``.

Prints ONE JSON object: nprnn_val_loss, torch_val_loss (both at the last step),
loss_ratio (nprnn / torch), the best-checkpoint losses, nprnn_wall_s (whole CLI run),
torch_wall_s (torch's training loop + the same periodic evaluations), wall_ratio, and
the options. Example (the issue's configuration, with nprnn's defaults spelled out):

    python benchmarks/charlm_vs_torch.py --steps 1000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from nprnn.app.batches import LinesBatcher, StreamBatcher, iter_eval_batches, iter_eval_stream
from nprnn.app.charlm import CharLM
from nprnn.app.text import Vocab, read_text, split_text, split_train_val
from nprnn.optim import LRSchedule


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", help="training text (default: nprnn's bundled first names)")
    p.add_argument("--mode", choices=("lines", "stream"), default="lines")
    p.add_argument("--model", choices=("lstm", "gru", "rnn"), default="lstm")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.1, help="nprnn's default is 0.1")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=64, help="stream mode only")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument(
        "--optimizer", choices=("sgd", "adam", "adamw", "adagrad", "rmsprop"), default="adam"
    )
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--warmup", type=int, default=50, help="nprnn's default is 50")
    p.add_argument("--decay", choices=("cosine", "linear", "none"), default="cosine")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--patience", type=int, default=0, help="0: no early stopping")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--init",
        choices=("nprnn", "torch"),
        default="nprnn",
        help="torch's starting weights: nprnn's (same seed as the CLI) or torch's own init",
    )
    p.add_argument("--keep", metavar="DIR", help="keep nprnn's run directory here")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="time each side this many times, alternating nprnn/torch; walls are medians",
    )
    p.add_argument(
        "--torch-threads", type=int, default=1, help="torch's threads (0: torch's own default)"
    )
    p.add_argument(
        "--nprnn-threads", type=int, default=1,
        help="nprnn train --threads (1: the CLI's default; 0: the BLAS library's default)",
    )  # fmt: skip
    p.add_argument(
        "--nprnn-procs", type=int, default=0,
        help="nprnn train --procs (0: the CLI's default, one process per core with at "
        "least 16 rows each; 1: one process)",
    )  # fmt: skip
    p.add_argument("--skip-nprnn", action="store_true", help="torch side only (its figures alone)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- data


def load_data(args):
    """``(vocab, train, val, data_arg)`` exactly as ``nprnn train`` prepares them."""
    if args.data is None:
        ref = resources.files("nprnn.app") / "corpora" / "first_names.txt"
        with resources.as_file(ref) as path:
            text = read_text(path)
    else:
        text = read_text(args.data)
    if args.mode == "lines":
        lines = [ln for ln in text.split("\n") if ln]
        train, val = split_train_val(lines, val_fraction=args.val_fraction, seed=args.seed)
        vocab = Vocab.build([*train, *val], lines_mode=True)
    else:
        train, val = split_text(text, val_fraction=args.val_fraction)
        vocab = Vocab.build([train, val], lines_mode=False)
        train, val = vocab.encode(train), vocab.encode(val)
    return vocab, train, val


def make_batcher(args, vocab, train):
    if args.mode == "lines":
        rng = np.random.default_rng([args.seed, 1])  # as Trainer seeds it
        return LinesBatcher(train, vocab, batch_size=args.batch_size, rng=rng)
    return StreamBatcher(train, batch_size=args.batch_size, seq_len=args.seq_len)


def initial_model(args, vocab):
    """The CharLM the CLI builds (same seed): its weights are the CLI's initial weights."""
    return CharLM(
        len(vocab),
        model=args.model,
        hidden=args.hidden,
        layers=args.layers,
        dropout=args.dropout,
        dtype=np.float32,
        rng=np.random.default_rng([args.seed, 0]),
    )


# ----------------------------------------------------------------------------- nprnn CLI


def run_nprnn(args, val, out: Path):
    """Train with the CLI (timed), then score the validation data with ``nprnn eval``."""
    cmd = [
        sys.executable, "-m", "nprnn", "train",
        "--mode", args.mode, "--model", args.model,
        "--hidden", str(args.hidden), "--layers", str(args.layers),
        "--dropout", repr(args.dropout), "--batch-size", str(args.batch_size),
        "--steps", str(args.steps),
        "--lr", repr(args.lr), "--optimizer", args.optimizer, "--clip", repr(args.clip),
        "--warmup", str(args.warmup), "--decay", args.decay,
        "--eval-every", str(args.eval_every), "--patience", str(args.patience),
        "--val-fraction", repr(args.val_fraction), "--seed", str(args.seed),
        "--out", str(out), "--quiet", "--threads", str(args.nprnn_threads),
        "--procs", str(args.nprnn_procs),
    ]  # fmt: skip
    if args.data is not None:
        cmd[4:4] = ["--data", str(args.data)]
    if args.mode == "stream":  # --seq-len is a stream-mode option (an error in lines mode)
        cmd[4:4] = ["--seq-len", str(args.seq_len)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"nprnn train failed ({proc.returncode}): {proc.stderr.strip()}")
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if x.strip()]
    procs = json.loads((out / "config.json").read_text())["train"]["procs"]
    res = {"cmd": " ".join(cmd[1:]), "wall_s": wall, "log": log, "procs": procs}
    if args.mode == "lines":  # nprnn eval on the held-out lines, as a user would
        val_file = out.parent / "val.txt"
        val_file.write_text("".join(ln + "\n" for ln in val), encoding="utf-8")
        for which in ("last", "best"):
            ev = subprocess.run(
                [sys.executable, "-m", "nprnn", "eval", str(out), "--data", str(val_file),
                 "--checkpoint", which, "--threads", "1"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            res[f"{which}_loss"] = json.loads(ev.stdout)["loss"]
    else:  # stream: the trainer's own score of the held-out tail (log.jsonl)
        res["last_loss"] = log[-1]["val_loss"]
        res["best_loss"] = min(e["val_loss"] for e in log if e.get("scheduled", True))
    return res


# ----------------------------------------------------------------------------- torch


def run_torch(args, vocab, train, val):
    import torch
    from torch import nn

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
        try:
            torch.set_num_interop_threads(args.torch_threads)
        except RuntimeError:  # already set in this process
            pass
    torch.manual_seed(args.seed)
    V, H, L = len(vocab), args.hidden, args.layers
    cell = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[args.model]

    class TorchCharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(V, H)
            self.rnn = cell(H, H, L, dropout=args.dropout if L > 1 else 0.0)
            self.drop = nn.Dropout(args.dropout)
            self.head = nn.Linear(H, V)

        def forward(self, ids, state=None):  # ids (T, B), time-major like nprnn
            h, state = self.rnn(self.embedding(ids), state)
            return self.head(self.drop(h)), state

    model = TorchCharLM()
    init_diff = None
    ref = initial_model(args, vocab)
    if args.init == "nprnn":
        sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ref.state_dict().items()}
        model.load_state_dict(sd, strict=True)
    opt_cls = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "adagrad": torch.optim.Adagrad,
        "rmsprop": torch.optim.RMSprop,
    }[args.optimizer]
    # foreach=False: the single-tensor path, the one nprnn's optimizers follow
    opt = opt_cls(model.parameters(), lr=args.lr, foreach=False)
    sched = LRSchedule(
        base_lr=args.lr,
        warmup_steps=min(args.warmup, args.steps),
        decay=args.decay,
        total_steps=args.steps,
    )
    batcher = make_batcher(args, vocab, train)
    ce = nn.functional.cross_entropy

    @torch.no_grad()
    def evaluate():
        model.eval()
        total, count, state = 0.0, 0, None
        if args.mode == "lines":
            batches = iter_eval_batches(val, vocab, args.batch_size)
        else:
            batches = iter_eval_stream(val, args.batch_size, args.seq_len)
        for inputs, targets, mask in batches:
            if args.mode == "lines":
                state = None  # each line from a zero state
            logits, state = model(torch.from_numpy(inputs), state)
            m = torch.from_numpy(mask)
            total += float(ce(logits[m], torch.from_numpy(targets)[m], reduction="sum"))
            count += int(m.sum())
        model.train()
        return total / count

    if args.init == "nprnn":  # the two models must agree before training
        ref_loss = _nprnn_eval(ref, vocab, val, args)
        init_diff = abs(evaluate() - ref_loss)

    curve, n_tokens, state = [], 0, None
    t_eval = 0.0
    model.train()
    t0 = time.perf_counter()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = sched.lr_at(step)
        if args.mode == "lines":
            inputs, targets, mask = batcher.next_batch()
            m = torch.from_numpy(mask)
            state = None
        else:
            inputs, targets, reset = batcher.next_batch()
            m = None
            if reset:
                state = None
        logits, new_state = model(torch.from_numpy(inputs), state)
        y = torch.from_numpy(targets)
        loss = ce(logits[m], y[m]) if m is not None else ce(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        if args.mode == "stream":
            state = (
                tuple(s.detach() for s in new_state)
                if isinstance(new_state, tuple)
                else (new_state.detach())
            )
        n_tokens += int(mask.sum()) if args.mode == "lines" else targets.size
        s = step + 1
        if s % args.eval_every == 0 or s == args.steps:
            te = time.perf_counter()
            curve.append({"step": s, "val_loss": evaluate(), "t": te - t0})
            t_eval += time.perf_counter() - te
    wall = time.perf_counter() - t0
    scheduled = [c["val_loss"] for c in curve if c["step"] % args.eval_every == 0]
    return {
        "wall_s": wall,
        "train_only_s": wall - t_eval,
        "last_loss": curve[-1]["val_loss"],
        "best_loss": min(scheduled) if scheduled else curve[-1]["val_loss"],
        "curve": curve,
        "n_tokens": n_tokens,
        "init_val_loss_diff": init_diff,
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _nprnn_eval(model, vocab, val, args) -> float:
    from nprnn.app.lm import evaluate

    return evaluate(
        model, vocab, val, mode=args.mode, batch_size=args.batch_size, seq_len=args.seq_len
    )


# ----------------------------------------------------------------------------- main


def _byte_compile_nprnn() -> None:
    """Write nprnn's bytecode cache before timing it, as ``pip install`` does. Without
    it an editable install on a machine with PYTHONDONTWRITEBYTECODE set (this one)
    compiles its ~50 modules from source on every run, about 0.07 s that no installed
    copy pays; torch's modules, imported by this process, are not timed at all."""
    import compileall  # noqa: PLC0415

    import nprnn  # noqa: PLC0415

    compileall.compile_dir(str(Path(nprnn.__file__).parent), quiet=1)


def main(argv=None) -> int:
    args = parse_args(argv)
    vocab, train, val = load_data(args)
    _byte_compile_nprnn()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    nruns, truns = [], []
    with tempfile.TemporaryDirectory(prefix="nprnn-bench-") as tmp:
        for i in range(max(args.repeat, 1)):  # alternate, so drifting load hits both
            if not args.skip_nprnn:
                out = Path(args.keep) if args.keep and i == 0 else Path(tmp) / f"run{i}"
                nruns.append(run_nprnn(args, val, out))
            truns.append(run_torch(args, vocab, train, val))
    nwalls = [x["wall_s"] for x in nruns]
    twalls = [x["wall_s"] for x in truns]
    nres = dict(nruns[0], wall_s=float(np.median(nwalls))) if nruns else None
    tres = dict(truns[0], wall_s=float(np.median(twalls)))
    tres["train_only_s"] = float(np.median([x["train_only_s"] for x in truns]))
    r = {
        "nprnn_val_loss": nres and nres["last_loss"],
        "torch_val_loss": tres["last_loss"],
        "loss_ratio": nres and nres["last_loss"] / tres["last_loss"],
        "nprnn_best_val_loss": nres and nres["best_loss"],
        "torch_best_val_loss": tres["best_loss"],
        "nprnn_wall_s": nres and round(nres["wall_s"], 2),
        "torch_wall_s": round(tres["wall_s"], 2),
        "wall_ratio": nres and round(nres["wall_s"] / tres["wall_s"], 3),
        "torch_train_only_s": round(tres["train_only_s"], 2),
        "nprnn_walls_s": [round(w, 2) for w in nwalls],
        "torch_walls_s": [round(w, 2) for w in twalls],
    }
    if nres:
        # the trainer's chars/s counts from the loop's start: its loop time, evals included
        median_run = nruns[int(np.argsort(nwalls)[len(nwalls) // 2])]
        rate = median_run["log"][-1]["chars_per_s"]
        r["nprnn_loop_s_est"] = round(tres["n_tokens"] / rate, 2) if rate else None
        r["nprnn_curve"] = [[e["step"], round(e["val_loss"], 4)] for e in nres["log"]]
        r["nprnn_cmd"] = nres["cmd"]
    r["torch_curve"] = [[c["step"], round(c["val_loss"], 4)] for c in tres["curve"]]
    r["targets_met"] = nres and {
        "loss_within_2pct": r["loss_ratio"] <= 1.02,
        "wall_le_1.0x": r["wall_ratio"] <= 1.0,
    }
    r.update(
        {
            "init_val_loss_diff": tres["init_val_loss_diff"],
            "train_tokens": tres["n_tokens"],
            "vocab_size": len(vocab),
            "n_train": len(train),
            "n_val": len(val),
            "threads": args.nprnn_threads,
            "procs": nres and nres["procs"],
            "torch_threads": tres["threads"],
            "loadavg_1min_at_start": load,
            "torch": tres["version"],
            "numpy": np.__version__,
            "python": platform.python_version(),
            "options": {k: v for k, v in vars(args).items() if k not in ("keep", "skip_nprnn")},
            "same_losses_every_repeat": len({x["last_loss"] for x in nruns}) <= 1
            and len({x["last_loss"] for x in truns}) == 1,
        }
    )
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
