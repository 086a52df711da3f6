"""Training a CharLM: the loop, evaluation, checkpoints, exact resume, Ctrl-C, divergence.

Each step: next batch → ``loss_and_grad`` → global-norm clipping → learning rate from
the warmup + decay schedule → optimizer step. Every ``eval_every`` steps the model is
scored on the validation data, one line goes to ``log.jsonl``, a checkpoint is written
(atomically) and, when the validation loss improved, the best weights too. Training
stops early after ``patience`` evaluations without improvement.

**Exact resume.** A checkpoint holds everything the next step reads: the weights, the
optimizer's moments and counters, the step, the batcher's position and shuffling RNG,
the model's dropout RNG, the stream state carried between chunks, and the
early-stopping record. Only the scheduled evaluations (at multiples of ``eval_every``)
count for early stopping and the best weights; the extra evaluation at the end of a run
that stops elsewhere is logged but changes nothing. So a run stopped at any step and
resumed ends with the same weights, bit for bit, as one that ran straight through
(given the same options; the schedule depends on ``steps``).

**Ending.** ``Trainer.run()`` returns a ``TrainResult`` whose ``status`` is ``"done"``,
``"early_stopped"``, ``"interrupted"`` (Ctrl-C: a checkpoint at the current step) or
``"diverged"`` (NaN/inf loss or gradient, or a loss above 3× the first step's: nothing
saved, the last good checkpoint stays).
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

from nprnn.optim import LRSchedule, clip_grad_norm, make_optimizer

from .runs import CheckpointError, RunDir, load_rng, save_checkpoint
from .text import LinesBatcher, StreamBatcher, iter_eval_batches, iter_eval_stream

__all__ = [
    "TrainOptions",
    "TrainResult",
    "Trainer",
    "evaluate",
    "plot_losses",
    "DIVERGENCE_FACTOR",
]

DIVERGENCE_FACTOR = 3.0


@dataclass
class TrainOptions:
    """The options of a training run (the CLI's flags of the same names)."""

    mode: str = "lines"
    batch_size: int = 64
    seq_len: int = 64
    steps: int = 2000
    lr: float = 3e-3
    optimizer: str = "adam"
    clip: float = 5.0
    seed: int = 0
    eval_every: int = 200
    patience: int = 4
    warmup: int = 50
    decay: str = "cosine"
    min_lr_ratio: float = 0.1
    quiet: bool = False

    def to_dict(self) -> dict:
        """The options as a JSON-able dict."""
        return asdict(self)


@dataclass
class TrainResult:
    """How a run ended: ``status``, ``step``, the last and best validation losses."""

    status: str
    step: int
    val_loss: float | None = None
    best_val_loss: float | None = None
    best_step: int | None = None
    message: str = ""


def evaluate(model, vocab, data, *, mode: str, batch_size: int, seq_len: int) -> float:
    """Mean cross-entropy (nats per predicted token) of ``model`` on ``data``.

    Lines mode: ``data`` is a list of lines, each read as <bos>+chars predicting
    chars+<eos>. Stream mode: ``data`` is an id array; every id after the first is
    predicted, with the state carried across chunks; the text is cut into
    ``batch_size`` contiguous streams, each starting from a zero state (so the result
    depends a little on ``batch_size``; 1 gives the exact sequential score).
    """
    total, count = 0.0, 0
    if mode == "lines":
        for inputs, targets, mask in iter_eval_batches(data, vocab, batch_size):
            loss, n, _ = model.score(inputs, targets, mask)
            total, count = total + loss * n, count + n
    else:
        state = None
        for inputs, targets, mask in iter_eval_stream(data, batch_size, seq_len):
            loss, n, state = model.score(inputs, targets, mask, state)
            total, count = total + loss * n, count + n
    if count == 0:
        raise ValueError("nothing to evaluate: the data holds no predictable character")
    return total / count


class Trainer:
    """Trains ``model`` on prepared data and checkpoints into ``run`` (a ``RunDir``).

    ``train_data``/``val_data``: lists of lines (lines mode) or int id arrays (stream).
    ``config``: the run's JSON config, written with every checkpoint. ``out``: where
    progress lines go (stderr by default).
    """

    def __init__(
        self,
        model,
        vocab,
        train_data,
        val_data,
        opts: TrainOptions,
        run: RunDir,
        config: dict,
        *,
        out=None,
    ):
        self.model, self.vocab, self.opts = model, vocab, opts
        self.run_dir, self.config, self.val_data = run, config, val_data
        self.out = out if out is not None else sys.stderr
        self.optimizer = make_optimizer(opts.optimizer, model.params(), lr=opts.lr)
        self.schedule = LRSchedule(
            base_lr=opts.lr,
            warmup_steps=min(opts.warmup, opts.steps),
            decay=opts.decay,
            total_steps=opts.steps,
            min_lr_ratio=opts.min_lr_ratio,
        )
        if opts.mode == "lines":
            rng = np.random.default_rng([opts.seed, 1])
            self.batcher = LinesBatcher(train_data, vocab, batch_size=opts.batch_size, rng=rng)
        else:
            self.batcher = StreamBatcher(
                train_data, batch_size=opts.batch_size, seq_len=opts.seq_len
            )
        self.step = 0
        self.stream_state = None
        self.record = {
            "initial_loss": None,
            "best_val": None,
            "best_step": None,
            "bad_evals": 0,
            "last_eval_step": None,
            "last_val": None,
            "loss_sum": 0.0,
            "loss_steps": 0,
        }
        self._stop = False
        self._bar = None
        self.saved_step = None  # the step of the last checkpoint written or loaded

    # ------------------------------------------------------------------ checkpoint state

    def state(self):
        """``(trainer_arrays, trainer_state)``: everything resuming needs besides weights."""
        arrays = {f"opt.{k}": v for k, v in self.optimizer.state_arrays().items()}
        if self.stream_state is not None:
            s = self.stream_state
            parts = s if isinstance(s, tuple) else (s,)
            arrays.update({f"stream_state.{i}": p for i, p in enumerate(parts)})
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_scalars(),
            "batcher": self.batcher.state_dict(),
            "model_rng": self.model.rng.bit_generator.state,
            "record": dict(self.record),
        }
        return arrays, state

    def load_state(self, arrays: dict, state: dict) -> None:
        """Restore what ``state()`` returned (the weights are loaded separately).

        Every field is checked (types, ranges, shapes, finiteness, the random-generator
        state); a damaged or foreign state raises :class:`CheckpointError` naming the
        first bad field, and then nothing has changed.
        """
        if not isinstance(arrays, dict):
            raise _damaged(f"the trainer arrays are a {type(arrays).__name__}, not a dict")
        if not isinstance(state, dict):
            raise _damaged(f"the trainer state is a {type(state).__name__}, not a dict")
        missing = [
            k for k in ("step", "optimizer", "batcher", "model_rng", "record") if k not in state
        ]
        if missing:
            raise _damaged(f"the trainer state lacks {', '.join(missing)}")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise _damaged(f"step {step!r}")
        record = _checked_record(state["record"], step)
        rng_state = _checked_rng_state(state["model_rng"], self.model.rng)
        opt_arrays, stream = {}, {}
        for key, a in arrays.items():
            if not isinstance(key, str) or not key.startswith(("opt.", "stream_state.")):
                raise _damaged(f"unexpected trainer array {key!r}")
            a = np.asarray(a)
            if a.dtype.kind != "f" or (a.size and not np.isfinite(a).all()):
                raise _damaged(f"trainer array {key!r} is not finite floats ({a.dtype})")
            if key.startswith("opt."):
                opt_arrays[key[4:]] = a
            else:
                stream[key] = a
        stream_state = self._checked_stream_state(stream)
        old_opt = (self.optimizer.state_arrays(), self.optimizer.state_scalars())
        old_batcher = self.batcher.state_dict()
        try:
            self.optimizer.load_state(opt_arrays, state["optimizer"])  # all or nothing
            try:
                self.batcher.load_state_dict(state["batcher"])
            except Exception:
                self.batcher.load_state_dict(old_batcher)
                raise
        except (ValueError, TypeError) as e:
            self.optimizer.load_state(*old_opt)
            raise _damaged(str(e).split(" — ")[0]) from None
        self.step = step
        self.model.rng.bit_generator.state = rng_state
        self.record.update(record)
        self.stream_state = stream_state
        self.saved_step = self.step

    def _checked_stream_state(self, parts: dict):
        """The carried stream state from the ``stream_state.<i>`` arrays, checked."""
        if not parts:
            return None
        m = self.model
        want = 2 if m.model == "lstm" else 1
        names = [f"stream_state.{i}" for i in range(want)]
        if self.opts.mode != "stream" or sorted(parts) != names:
            raise _damaged(
                f"stream state arrays {sorted(parts)} (expected {names} in stream mode, "
                "none in lines mode)"
            )
        shape = (m.num_layers, self.opts.batch_size, m.hidden)
        for k in names:
            if parts[k].shape != shape or parts[k].dtype != m.dtype:
                raise _damaged(
                    f"{k} is {parts[k].dtype} {parts[k].shape}, expected {m.dtype} {shape}"
                )
        got = [np.array(parts[k], copy=True) for k in names]
        return tuple(got) if want == 2 else got[0]

    def save(self, *, best: bool = False) -> None:
        """Write a checkpoint of the current step (atomic); ``best``: also as the best weights."""
        arrays, state = self.state()
        weights = self.model.state_dict()
        save_checkpoint(
            self.run_dir,
            step=self.step,
            model_arrays=weights,
            trainer_arrays=arrays,
            trainer_state=state,
            config=self.config,
            best_arrays=weights if best else None,
        )
        self.saved_step = self.step

    # ------------------------------------------------------------------ the loop

    def _say(self, msg: str) -> None:
        if self.opts.quiet:
            return
        if self._bar is not None:  # above the progress bar, not through it
            self._bar.write(msg, file=self.out)
        else:
            print(msg, file=self.out, flush=True)

    def _on_sigint(self, signum, frame):  # first Ctrl-C: finish the step; second: now
        if self._stop:
            raise KeyboardInterrupt
        self._stop = True

    def run(self) -> TrainResult:
        """Train up to ``opts.steps`` steps (from the current step); see the module doc."""
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, self._on_sigint) if main else None
        try:
            return self._loop()
        except KeyboardInterrupt:  # raised mid-step: the state in memory may be half-updated
            return self._result("interrupted", message=self._resume_hint(saved=False))
        finally:
            if main:
                signal.signal(signal.SIGINT, old)

    def _loop(self) -> TrainResult:
        o, rec = self.opts, self.record
        if o.patience and rec["bad_evals"] >= o.patience:
            return self._result("early_stopped", message="this run had already stopped early")
        if self.step >= o.steps:
            return self._result(
                "done",
                message=f"the run is already at step {self.step} of "
                f"{o.steps}: pass a larger --steps to train on",
            )
        self._bar = bar = _progress(total=o.steps, initial=self.step, disable=o.quiet)
        t0, tokens0 = time.perf_counter(), 0
        try:
            while self.step < o.steps:
                if self._stop:
                    self.save()
                    return self._result("interrupted", message=self._resume_hint(saved=True))
                loss, n_tok = self._train_step()
                if loss is None:  # n_tok is the message then
                    return self._result("diverged", message=n_tok)
                tokens0 += n_tok
                rate = tokens0 / max(time.perf_counter() - t0, 1e-9)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({"loss": f"{loss:.3f}", "chars/s": f"{rate:,.0f}"}, False)
                if self.step % o.eval_every == 0 and self._evaluate(rate, scheduled=True):
                    return self._result(
                        "early_stopped",
                        message=(f"stopped early: no improvement in {o.patience} evaluations"),
                    )
        finally:
            if bar is not None:
                bar.close()
                self._bar = None
        if rec["last_eval_step"] != self.step:
            self._evaluate(tokens0 / max(time.perf_counter() - t0, 1e-9), scheduled=False)
        return self._result("done")

    def _train_step(self):
        """One optimizer step: ``(loss, predicted tokens)``, or ``(None, why)`` if diverged."""
        o, rec, model = self.opts, self.record, self.model
        self.optimizer.lr = self.schedule.lr_at(self.step)
        if o.mode == "lines":
            inputs, targets, mask = self.batcher.next_batch()
            state = None
        else:
            inputs, targets, reset = self.batcher.next_batch()
            mask, state = None, (None if reset else self.stream_state)
        model.train()
        model.zero_grad()
        loss, new_state = model.loss_and_grad(inputs, targets, mask, state)
        grads = model.grads()
        norm = clip_grad_norm(grads, o.clip) if o.clip > 0 else _global_norm(grads)
        first = rec["initial_loss"]
        if not (math.isfinite(loss) and math.isfinite(norm)) or (
            first is not None and loss > DIVERGENCE_FACTOR * first
        ):
            return None, self._diverged_message(loss, norm, first)
        self.optimizer.step(grads)
        self.step += 1
        if o.mode == "stream":
            self.stream_state = new_state
        if first is None:
            rec["initial_loss"] = loss
        n_tok = int(np.count_nonzero(mask)) if mask is not None else int(np.size(targets))
        rec["loss_sum"] += loss
        rec["loss_steps"] += 1
        return loss, n_tok

    def _evaluate(self, rate: float, *, scheduled: bool) -> bool:
        """Score, log, checkpoint; returns True when early stopping says stop."""
        o, rec = self.opts, self.record
        val = evaluate(
            self.model,
            self.vocab,
            self.val_data,
            mode=o.mode,
            batch_size=o.batch_size,
            seq_len=o.seq_len,
        )
        improved = False
        if scheduled:
            if rec["best_val"] is None or val < rec["best_val"]:
                rec.update(best_val=val, best_step=self.step, bad_evals=0)
                improved = True
            else:
                rec["bad_evals"] += 1
        train_loss = rec["loss_sum"] / rec["loss_steps"] if rec["loss_steps"] else None
        entry = {
            "step": self.step,
            "train_loss": train_loss,
            "val_loss": val,
            "val_bits_per_char": val / math.log(2),
            "lr": self.optimizer.lr,
            "chars_per_s": round(rate, 1),
            "best": improved,
            "scheduled": scheduled,
        }
        rec.update(last_eval_step=self.step, last_val=val, loss_sum=0.0, loss_steps=0)
        self.run_dir.append_log(entry)
        self.save(best=improved)
        tl = "" if train_loss is None else f"  train {train_loss:.4f}"
        self._say(
            f"step {self.step:>6}/{o.steps}{tl}  val {val:.4f}"
            f"{'  (best)' if improved else ''}  {rate:,.0f} chars/s"
        )
        return bool(scheduled and o.patience and rec["bad_evals"] >= o.patience)

    # ------------------------------------------------------------------ messages

    def _diverged_message(self, loss: float, norm: float, first) -> str:
        if not math.isfinite(loss):
            why = f"the loss is {loss}"
        elif not math.isfinite(norm):
            why = f"the gradient norm is {norm}"
        else:
            why = f"the loss {loss:.3g} exceeds {DIVERGENCE_FACTOR:g}x the first step's {first:.3g}"
        last = self.saved_step
        where = f"the checkpoint of step {last}" if last is not None else "the last checkpoint"
        return (
            f"training diverged at step {self.step + 1}: {why} — kept {where}; "
            f"resume with a lower learning rate: nprnn train --out {self.run_dir.path} "
            f"--resume --lr {self.opts.lr / 4:g}"
        )

    def _resume_hint(self, *, saved: bool) -> str:
        what = f"saved a checkpoint at step {self.step}" if saved else "kept the last checkpoint"
        return (
            f"interrupted — {what}; continue with: nprnn train --out {self.run_dir.path} --resume"
        )

    def _result(self, status: str, message: str = "") -> TrainResult:
        rec = self.record
        return TrainResult(
            status=status,
            step=self.step,
            val_loss=rec["last_val"],
            best_val_loss=rec["best_val"],
            best_step=rec["best_step"],
            message=message,
        )


_RECORD_TYPES = {
    "initial_loss": ("loss", True),
    "best_val": ("loss", True),
    "best_step": ("step", True),
    "bad_evals": ("count", False),
    "last_eval_step": ("step", True),
    "last_val": ("loss", True),
    "loss_sum": ("loss", False),
    "loss_steps": ("count", False),
}


def _damaged(what: str) -> CheckpointError:
    return CheckpointError(
        f"the checkpoint's trainer state is damaged or foreign ({what}) — "
        "restore the run directory, or start the run again"
    )


def _checked_record(rec, step: int) -> dict:
    """The early-stopping record of a checkpoint, every field type- and range-checked."""
    if not isinstance(rec, dict) or set(rec) != set(_RECORD_TYPES):
        got = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
        raise _damaged(f"record with keys {got}, expected {sorted(_RECORD_TYPES)}")
    for key, (kind, nullable) in _RECORD_TYPES.items():
        v = rec[key]
        if v is None and nullable:
            continue
        if kind == "loss":
            ok = (
                not isinstance(v, bool)
                and isinstance(v, int | float)
                and math.isfinite(v)
                and v >= 0
            )
        else:  # a step (at most the checkpoint's) or a count
            high = step if kind == "step" else math.inf
            ok = not isinstance(v, bool) and isinstance(v, int) and 0 <= v <= high
        if not ok:
            raise _damaged(f"record {key}={v!r}")
    return dict(rec)


def _checked_rng_state(d, rng: np.random.Generator) -> dict:
    """A bit-generator state for ``rng``'s kind of generator, checked by loading it."""
    try:
        loaded = load_rng(d)
    except CheckpointError as e:
        raise _damaged(f"model_rng: {str(e).split(' — ')[0]}") from None
    if type(loaded.bit_generator) is not type(rng.bit_generator):
        raise _damaged(
            f"model_rng is a {type(loaded.bit_generator).__name__} state, "
            f"expected {type(rng.bit_generator).__name__}"
        )
    return loaded.bit_generator.state


def _global_norm(grads: dict) -> float:
    return math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))


def _progress(*, total: int, initial: int, disable: bool):
    """A tqdm bar on stderr, or None when quiet, not a TTY, or tqdm is missing."""
    if disable or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False)


def plot_losses(log: list, path) -> bool:
    """Write the train/validation loss curves of ``log`` to a PNG; False without matplotlib."""

    def number(v) -> bool:
        return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)

    # log.jsonl is not checksummed: entries that are not {step: int, loss: number} are skipped
    curves = {
        key: [
            (e["step"], e[key])
            for e in log
            if isinstance(e, dict)
            and isinstance(e.get("step"), int)
            and not isinstance(e.get("step"), bool)
            and number(e.get(key))
        ]
        for key in ("train_loss", "val_loss")
    }
    if not any(curves.values()):
        return False
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend, no GUI
    except ImportError:
        return False
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        pts = curves[key]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=".", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True
