"""The one training loop: schedules, clipping, evaluation, early stopping, checkpoints,
exact resume, Ctrl-C, divergence — for the language model, the classifier and the tasks.

What is trained is an :class:`Objective`: a model (an :class:`nprnn.Module` with a
generator ``rng`` for its dropout), a batcher, a loss with its gradients, an
evaluation. Each step::

    batch  = batcher.next_batch()
    batch  = parallel.shard(batch, objective)            # (1) this process's share
    loss, n, carry = objective.loss_and_grad(batch, carry)   # forward + backward
    loss, n = parallel.average_gradients(grads, loss, n, stop)  # (2) before clipping
    clip, divergence check, lr from the schedule, optimizer step

(1) and (2) are the only places data parallelism needs in a step: :class:`Parallel`
is the single-process identity; the data-parallel version (:mod:`.parallel`, over MPI
or over shared memory with ``--procs N``) splits the batch there and averages the
gradients (weighted by ``n``, the predictions each process counted) in one collective
that also carries each process's Ctrl-C flag, so that all of them stop after the same
step (``parallel.should_stop``). Evaluation goes through one call
too, ``objective.evaluate(part, parts)`` → totals, then ``parallel.sum_totals``; only
the process with ``parallel.writes`` writes the run. A checkpoint holds the global
carried state (``parallel.gather_carry``); a resume keeps it whole until the loop
starts, where each process takes its rows (``shard_carry``).

Every ``eval_every`` steps the model is scored, one line goes to ``log.jsonl``, a
checkpoint is written (atomically) and, when the validation loss improved, the best
weights too. Training stops early after ``patience`` evaluations without improvement.

**Exact resume.** A checkpoint holds everything the next step reads: the weights, the
optimizer's moments and counters, the step, the batcher's position and RNG, the model's
dropout RNG, the state carried between batches (stream mode), and the early-stopping
record. Only the scheduled evaluations (at multiples of ``eval_every``) count for early
stopping and the best weights; the extra evaluation at the end of a run that stops
elsewhere is logged but changes nothing. So a run stopped at any step and resumed ends
with the same weights, bit for bit, as one that ran straight through (given the same
options; the schedule depends on ``steps``).

**Ending.** :meth:`Trainer.run` returns a :class:`TrainResult` whose ``status`` is
``"done"``, ``"early_stopped"``, ``"interrupted"`` (Ctrl-C: a checkpoint at the current
step) or ``"diverged"`` (NaN/inf loss or gradient, or a loss above 3× the first step's:
nothing saved, the last good checkpoint stays).
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
from nprnn.optim.clip import global_norm

from .errors import CheckpointError, what_of
from .files import load_rng
from .runs import RunDir, save_checkpoint

__all__ = ["LoopOptions", "TrainResult", "Objective", "Parallel", "Trainer", "DIVERGENCE_FACTOR"]

DIVERGENCE_FACTOR = 3.0


@dataclass
class LoopOptions:
    """What the loop reads (the options of the same names of every training command)."""

    steps: int = 2000
    lr: float = 3e-3
    optimizer: str = "adam"
    clip: float = 5.0
    warmup: int = 0
    decay: str = "none"
    eval_every: int = 200
    patience: int = 0
    min_lr_ratio: float = 0.1
    quiet: bool = False

    def to_dict(self) -> dict:
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


class Objective:
    """What :class:`Trainer` trains; subclass it.

    ``model``: an :class:`nprnn.Module` with ``rng`` (its dropout generator).
    ``batcher``: ``next_batch()``, ``state_dict()``, ``load_state_dict(d)``.
    ``unit``: what ``n`` counts (for the speed shown: ``chars``, ``texts``, ``seqs``).
    """

    model = None
    batcher = None
    unit = "items"

    def loss_and_grad(self, batch, carry):
        """Forward and backward of ``batch`` (gradients accumulate into ``model.grads``):
        ``(mean loss, n predictions counted, new carry)``. ``carry`` is what the previous
        batch returned (None at first, and for objectives that carry nothing)."""
        raise NotImplementedError

    def evaluate(self, part: int = 0, parts: int = 1) -> dict:
        """Validation totals ``{metric: (sum, count)}`` over the share ``part`` of
        ``parts`` of the validation data; ``"loss"`` is required (the mean drives the
        best weights and early stopping), others (``"accuracy"``) are logged."""
        raise NotImplementedError

    def check_carry(self, arrays: list):
        """The carry rebuilt from a checkpoint's arrays (``ValueError`` if they do not
        fit); an objective that carries nothing accepts only ``[]``."""
        if arrays:
            raise ValueError(f"{len(arrays)} carried state arrays, expected none")
        return None

    def batch_axes(self, batch) -> tuple:
        """The batch axis of each array of ``batch`` (for :meth:`Parallel.shard`)."""
        raise NotImplementedError


class Parallel:
    """Single process: the data-parallel hooks are the identity (see the module doc)."""

    rank, size = 0, 1
    writes = True  # whether this process writes the run directory

    def check_batch_size(self, batch_size: int) -> None:
        """Refuse a global batch the processes cannot share (the MPI version)."""

    def setup_done(self, model) -> None:
        """Every process has built its model and state (the MPI version agrees on it)."""

    def setup_failed(self) -> None:
        """This process's setup raised (the MPI version tells the others)."""

    def run(self, loop):
        """``loop()``, the training loop, in every process (``--procs N``: rank 0 forks
        the others here, see :mod:`.local`)."""
        return loop()

    def shard(self, batch, objective: Objective):
        """This process's share of the global ``batch`` (None: no rows of it)."""
        return batch

    def average_gradients(self, grads: dict, loss: float, count: int, stop: bool = False):
        """Make ``grads`` (in place) those of the global batch; ``(global mean loss,
        global count)``. ``stop``: this process's Ctrl-C flag, agreed for ``should_stop``."""
        return loss, count

    def should_stop(self, local: bool) -> bool:
        """Whether to stop before the next step, the same answer in every process."""
        return local

    def sum_totals(self, totals: dict) -> dict:
        """Evaluation totals summed over the processes."""
        return totals

    def gather_carry(self, carry):
        """The global carried state, for the checkpoint (on the writing process)."""
        return carry

    def shard_carry(self, carry):
        """This process's share of a global carried state read from a checkpoint."""
        return carry


# ----------------------------------------------------------------------------- optimizer use
# The only place the loop touches the optimizer API (so it can move to the bound API).


def _make_optimizer(model, opts: LoopOptions):
    return make_optimizer(opts.optimizer, model.params, lr=opts.lr)


def _clip(grads: dict, max_norm: float) -> float:
    return clip_grad_norm(grads, max_norm) if max_norm > 0 else global_norm(grads)


# ----------------------------------------------------------------------------- the loop


class Trainer:
    """Trains ``objective`` with ``opts`` and checkpoints into ``run`` (a :class:`RunDir`,
    or None: nothing is written, Ctrl-C just stops).

    ``config``: the run's JSON config, written with every checkpoint. ``resume_hint``:
    the command that continues this run (quoted in messages). ``out``: where progress
    lines go (stderr by default).
    """

    def __init__(
        self,
        objective: Objective,
        opts: LoopOptions,
        run: RunDir | None = None,
        config: dict | None = None,
        *,
        resume_hint: str = "",
        parallel=None,
        out=None,
    ):
        self.objective, self.model, self.opts = objective, objective.model, opts
        self.run_dir, self.config = run, config if config is not None else {}
        self.parallel = parallel if parallel is not None else Parallel()
        self.resume_hint = resume_hint
        self.out = out if out is not None else sys.stderr
        if getattr(opts, "device", "cpu") == "cuda":  # --device cuda (cli.use_cuda chose cupy)
            self.model.to("cuda")
        self.optimizer = _make_optimizer(self.model, opts)
        self.schedule = LRSchedule(
            base_lr=opts.lr,
            warmup_steps=opts.warmup,
            decay=opts.decay,
            total_steps=opts.steps,
            min_lr_ratio=opts.min_lr_ratio,
        )
        self.batcher = objective.batcher
        self.step = 0
        self.carry = None
        self._carry_global = False  # a checkpoint's carried state, until the loop shards it
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

    @property
    def writes(self) -> bool:
        return self.run_dir is not None and self.parallel.writes

    # ------------------------------------------------------------------ checkpoint state

    def state(self):
        """``(trainer_arrays, trainer_state)``: everything resuming needs besides weights."""
        arrays = {f"opt.{k}": v for k, v in self.optimizer.state_arrays().items()}
        carry = self.carry if self._carry_global else self.parallel.gather_carry(self.carry)
        if carry is not None:
            parts = carry if isinstance(carry, tuple) else (carry,)
            arrays.update({f"carry.{i}": p for i, p in enumerate(parts)})
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_scalars(),
            "batcher": self.batcher.state_dict(),
            "model_rng": self.model.rng.bit_generator.state,
            "record": dict(self.record),
        }
        return arrays, state

    def load_state(self, arrays: dict, state: dict) -> None:
        """Restore what :meth:`state` returned (the weights are loaded separately).

        Every field is checked (types, ranges, shapes, finiteness, the random-generator
        state); a damaged or foreign state raises :class:`CheckpointError` naming the
        first bad field, and then nothing has changed.
        """
        if not isinstance(arrays, dict):
            raise _damaged(f"the trainer arrays are a {type(arrays).__name__}, not a dict")
        if not isinstance(state, dict):
            raise _damaged(f"the trainer state is a {type(state).__name__}, not a dict")
        keys = ("step", "optimizer", "batcher", "model_rng", "record")
        missing = [k for k in keys if k not in state]
        if missing:
            raise _damaged(f"the trainer state lacks {', '.join(missing)}")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise _damaged(f"step {step!r}")
        record = _checked_record(state["record"], step)
        rng_state = _checked_rng_state(state["model_rng"], self.model.rng)
        opt_arrays, carried = {}, {}
        for key, a in arrays.items():
            if not isinstance(key, str) or not key.startswith(("opt.", "carry.")):
                raise _damaged(f"unexpected trainer array {key!r}")
            a = np.asarray(a)
            if a.dtype.kind != "f" or (a.size and not np.isfinite(a).all()):
                raise _damaged(f"trainer array {key!r} is not finite floats ({a.dtype})")
            if key.startswith("opt."):
                opt_arrays[key[4:]] = a
            else:
                carried[key] = a
        names = [f"carry.{i}" for i in range(len(carried))]
        if sorted(carried) != names:
            raise _damaged(f"carried state arrays {sorted(carried)}")
        try:
            carry = self.objective.check_carry([carried[k] for k in names])
        except (ValueError, TypeError) as e:
            raise _damaged(what_of(e)) from None
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
            raise _damaged(what_of(e)) from None
        self.step = step
        self.model.rng.bit_generator.state = rng_state
        self.record.update(record)
        self.carry, self._carry_global = carry, True  # each process's rows when the loop starts
        self.saved_step = self.step

    def save(self, *, best: bool = False) -> None:
        """Write a checkpoint of the current step (atomic); ``best``: also as the best weights."""
        if self.run_dir is None:
            return
        arrays, state = self.state()  # on every process: it gathers the carried state
        if not self.parallel.writes:
            return
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

    # ------------------------------------------------------------------ running

    def _say(self, msg: str) -> None:
        if self.opts.quiet or not self.parallel.writes:
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
            return self.parallel.run(self._loop)
        except KeyboardInterrupt:  # raised mid-step: the state in memory may be half-updated
            if self.parallel.size > 1:  # the other processes wait for this one: end the job
                raise
            return self._result("interrupted", message=self._resume_message(saved=False))
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
        if self._carry_global:  # in every process (--procs N forks before the loop)
            self.carry, self._carry_global = self.parallel.shard_carry(self.carry), False
        self._bar = bar = _progress(
            total=o.steps, initial=self.step, disable=o.quiet or not self.parallel.writes
        )
        t0, counted = time.perf_counter(), 0
        try:
            while self.step < o.steps:
                if self.parallel.should_stop(self._stop):
                    self.save()
                    return self._result("interrupted", message=self._resume_message(saved=True))
                loss, n = self._train_step()
                if loss is None:  # n is the message then
                    return self._result("diverged", message=n)
                counted += n
                rate = counted / max(time.perf_counter() - t0, 1e-9)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        {"loss": f"{loss:.3f}", f"{self.objective.unit}/s": f"{rate:,.0f}"}, False
                    )
                if self.step % o.eval_every == 0 and self._evaluate(rate, scheduled=True):
                    return self._result(
                        "early_stopped",
                        message=f"stopped early: no improvement in {o.patience} evaluations",
                    )
        finally:
            if bar is not None:
                bar.close()
                self._bar = None
        if rec["last_eval_step"] != self.step:
            self._evaluate(counted / max(time.perf_counter() - t0, 1e-9), scheduled=False)
        return self._result("done")

    def _train_step(self):
        """One optimizer step: ``(loss, predictions counted)``, or ``(None, why)``."""
        o, rec, model = self.opts, self.record, self.model
        self.optimizer.lr = self.schedule.lr_at(self.step)
        batch = self.batcher.next_batch()
        batch = self.parallel.shard(batch, self.objective)  # hook (1): this process's share
        model.train()
        model.zero_grad()
        if batch is None:  # a last batch with fewer rows than processes: none for this one
            loss, n, carry = 0.0, 0, self.carry
        else:
            loss, n, carry = self.objective.loss_and_grad(batch, self.carry)
        grads = model.grads
        # hook (2): the global batch's gradients, mean loss and count
        loss, n = self.parallel.average_gradients(grads, loss, n, self._stop)
        norm = _clip(grads, o.clip)
        first = rec["initial_loss"]
        if not (math.isfinite(loss) and math.isfinite(norm)) or (
            first is not None and loss > DIVERGENCE_FACTOR * first
        ):
            return None, self._diverged_message(loss, norm, first)
        self.optimizer.step(grads, known_finite=True)  # the finite norm above implies it
        self.step += 1
        self.carry = carry
        if first is None:
            rec["initial_loss"] = loss
        rec["loss_sum"] += loss
        rec["loss_steps"] += 1
        return loss, n

    def validate(self) -> dict:
        """Validation metrics (means of the objective's totals), the model in eval mode."""
        self.model.eval()
        p = self.parallel
        totals = p.sum_totals(self.objective.evaluate(p.rank, p.size))
        return {k: s / c if c else math.nan for k, (s, c) in totals.items()}

    def _evaluate(self, rate: float, *, scheduled: bool) -> bool:
        """Score, log, checkpoint; returns True when early stopping says stop."""
        o, rec = self.opts, self.record
        metrics = self.validate()
        val = metrics["loss"]
        improved = False
        if scheduled:
            if rec["best_val"] is None or val < rec["best_val"]:
                rec.update(best_val=val, best_step=self.step, bad_evals=0)
                improved = True
            else:
                rec["bad_evals"] += 1
        train_loss = rec["loss_sum"] / rec["loss_steps"] if rec["loss_steps"] else None
        entry = {"step": self.step, "train_loss": train_loss, "val_loss": val}
        entry.update({f"val_{k}": v for k, v in metrics.items() if k != "loss"})
        entry.update(
            {
                "lr": self.optimizer.lr,
                f"{self.objective.unit}_per_s": round(rate, 1),
                "best": improved,
                "scheduled": scheduled,
            }
        )
        rec.update(last_eval_step=self.step, last_val=val, loss_sum=0.0, loss_steps=0)
        if self.writes:
            self.run_dir.append_log(entry)
        self.save(best=improved)
        tl = "" if train_loss is None else f"  train {train_loss:.4f}"
        extra = "".join(f"  val {k} {v:.4f}" for k, v in metrics.items() if k != "loss")
        self._say(
            f"step {self.step:>6}/{o.steps}{tl}  val {val:.4f}{extra}"
            f"{'  (best)' if improved else ''}  {rate:,.0f} {self.objective.unit}/s"
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
        if not self.writes:
            return f"training diverged at step {self.step + 1}: {why} — lower the learning rate"
        return (
            f"training diverged at step {self.step + 1}: {why} — kept {where}; resume with "
            f"a lower learning rate: {self.resume_hint} --lr {self.opts.lr / 4:g}"
        )

    def _resume_message(self, *, saved: bool) -> str:
        if not self.writes:
            return "interrupted — nothing was saved (no run directory)"
        what = f"saved a checkpoint at step {self.step}" if saved else "kept the last checkpoint"
        return f"interrupted — {what}; continue with: {self.resume_hint}"

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


# ----------------------------------------------------------------------------- state checks

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
        f"the checkpoint's trainer state is damaged or foreign ({what})",
        "restore the run directory, or start the run again",
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
        raise _damaged(f"model_rng: {e.what}") from None
    if type(loaded.bit_generator) is not type(rng.bit_generator):
        raise _damaged(
            f"model_rng is a {type(loaded.bit_generator).__name__} state, "
            f"expected {type(rng.bit_generator).__name__}"
        )
    return loaded.bit_generator.state


def _progress(*, total: int, initial: int, disable: bool):
    """A tqdm bar on stderr, or None when quiet or not a TTY."""
    if disable or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False)
