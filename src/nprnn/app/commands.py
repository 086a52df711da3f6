"""What every training command does around the loop: claim ``--out``, resume, check
the options that depend on each other, check the memory, start (and clean up a start
that fails), report how it ended.

A command supplies a *build* function: given the options (merged with the run's when
resuming) and the loaded run (or None), it prepares the data, checks that a step fits
in memory (before building the model), builds the objective and returns a
:class:`Built`. :func:`train` does the rest, the same for the language model, the
classifier and the tasks.

Under ``mpiexec -n N`` (:mod:`.mpi`) every rank runs this; the ranks agree that the
setup succeeded everywhere before training, and only rank 0 writes ``--out`` and prints.
With ``--procs N`` (:mod:`.local`) the setup runs once, and the loop in N processes.

Exit statuses (:func:`exit_status`): 0 done or stopped early; 3 diverged; 130
interrupted (a checkpoint of the current step is saved).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from . import options as O
from .declare import merge_resumed
from .errors import CheckpointError, UsageError
from .load import Loaded, read_run
from .local import resolve_procs
from .mpi import make_parallel
from .runs import RunDir, refresh_copies
from .train import LoopOptions, Trainer, TrainResult

__all__ = [
    "Built",
    "train",
    "claim_out",
    "resolve_warmup",
    "loop_options",
    "exit_status",
    "silent_status",
    "EXIT_USAGE",
    "EXIT_DIVERGED",
    "EXIT_INTERRUPTED",
    "PLOT",
]

EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130
PLOT = "loss.png"


@dataclass
class Built:
    """What a command's build function returns."""

    objective: object
    config: dict
    start: str  # the line printed when training starts (unless --quiet)
    notes: tuple = ()  # lines printed before it (e.g. how many lines --max-len cut)


def loop_options(opts) -> LoopOptions:
    """The loop's options from a command's options (the fields named in ``options.LOOP``)."""
    return LoopOptions(**{k: getattr(opts, k) for k in O.LOOP})


def resolve_warmup(opts, given: set, resumed: bool) -> None:
    """No silent clamping: a ``--warmup`` larger than ``--steps`` is an error when given
    (or stored in the run being resumed); the default becomes at most ``--steps``."""
    if opts.warmup <= opts.steps:
        return
    if "warmup" in given or resumed:
        src = "" if "warmup" in given else " (of the run)"
        raise UsageError(
            f"--warmup {opts.warmup}{src} exceeds --steps {opts.steps}",
            f"pass --warmup {opts.steps} or less, or more --steps",
        )
    opts.warmup = opts.steps


def claim_out(run: RunDir, opts, kind: str) -> Loaded | None:
    """Check that ``--out`` may be used; the run to resume (loaded), or None."""
    out = run.path
    if run.is_run():
        if opts.resume:
            return read_run(run, "resume", kind)
        if not opts.force:
            raise UsageError(
                f"--out {out} already holds a run",
                "pass --resume to continue it, --force to replace it, or choose another --out",
            )
        return None
    if opts.resume:
        raise UsageError(f"--resume: {out} holds no run to resume", "drop --resume to start one")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file", "choose a directory")
    taken = [n for n in (*RunDir.KNOWN, PLOT) if (out / n).exists()]
    if taken and not opts.force:
        raise UsageError(
            f"--out {out} holds {', '.join(taken)} that a run would overwrite",
            "choose another --out, or pass --force",
        )
    return None


def _clear(run: RunDir) -> None:
    """--force: remove the files of the previous run (the new checkpoint follows at once)."""
    for name in (RunDir.TRAINER_JSON, RunDir.BEST, RunDir.LOG, RunDir.MODEL, RunDir.CONFIG, PLOT):
        (run.path / name).unlink(missing_ok=True)


def train(opts, given: set, *, kind: str, out: str, build, resume_hint: str):
    """Run a training command; ``(result, trainer, run, prev)``. See the module docstring.

    ``kind``: the config format; ``out``: the run directory; ``build(opts, prev)`` ->
    :class:`Built` (when resuming, its objective trains ``prev.model``); ``resume_hint``:
    the command that continues the run.
    """
    run = RunDir(out)
    parallel = make_parallel()  # under mpiexec with N > 1 ranks: MPI, else the identity
    try:
        prev = claim_out(run, opts, kind)
        if prev is not None:
            merge_resumed(opts, given, prev.config)
            if "threads" not in given:  # the run's own (the CLI set the default)
                from .cli import set_blas_threads

                set_blas_threads(opts.threads)
        parallel = resolve_procs(opts, given, parallel)  # --procs N > 1: N local processes
        parallel.check_batch_size(opts.batch_size)  # the run's own when resuming
        resolve_warmup(opts, given, prev is not None)
        built = build(opts, prev)
        trainer = Trainer(
            built.objective,
            loop_options(opts),
            run,
            built.config,
            resume_hint=resume_hint,
            parallel=parallel,
        )
        existed = run.path.exists()
        if parallel.writes:
            run.check_writable()
        if prev is not None:
            try:
                trainer.load_state(prev.trainer_arrays, prev.trainer_state)
            except CheckpointError as e:
                raise CheckpointError(
                    f"cannot resume the run in {run.path}: {e.what}",
                    "restore the run directory, or start the run again with --force",
                ) from None
    except BaseException:
        parallel.setup_failed()  # under MPI: the other ranks stop too (no one waits)
        raise
    # every rank has read --out before rank 0 writes to it, and starts from its weights
    parallel.setup_done(trainer.model)
    try:
        if prev is not None:
            if parallel.writes:  # evaluations logged after this checkpoint happen again
                run.trim_log(trainer.step)
                refresh_copies(run)  # a kill after the commit may have left the previous copies
        else:
            if opts.force and parallel.writes:
                _clear(run)
            trainer.save()  # step 0: the run exists from now on and can always be resumed
        if not opts.quiet and parallel.writes:
            for line in built.notes:
                print(line, file=sys.stderr)
            print(
                built.start.format(verb=f"resuming at step {trainer.step}" if prev else "training"),
                file=sys.stderr,
            )
        result = trainer.run()
    except BaseException:
        if prev is None and trainer.step == 0 and parallel.writes:
            run.discard(remove_dir=not existed)  # a failed start leaves nothing behind
        raise
    return result, trainer, run, prev


def train_and_plot(opts, given: set, **kw):
    """:func:`train` (same keywords, same return), then the run's loss plot (``PLOT``)
    on the rank that writes; a long run's plot is drawn by a child process that imports
    matplotlib while training runs (:func:`nprnn.app.viz.loss_plotter`)."""
    from .viz import draw_loss_plot, loss_plotter

    with loss_plotter(opts.steps) as plotter:
        result, trainer, run, loaded = train(opts, given, **kw)
        if trainer.parallel.writes:  # another MPI rank: rank 0 draws
            draw_loss_plot(run.read_log(), run.path / PLOT, title=run.path.name,
                           plotter=plotter)  # fmt: skip
    return result, trainer, run, loaded


def exit_status(result: TrainResult, quiet: bool) -> int | None:
    """The exit status for a run that did not finish (with its message printed), or None."""
    if result.status == "diverged":
        print(f"nprnn: {result.message}", file=sys.stderr)
        return EXIT_DIVERGED
    if result.status == "interrupted":
        print(f"nprnn: {result.message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.message:
        print(result.message, file=sys.stderr if quiet else sys.stdout)
    return None


def silent_status(result: TrainResult) -> int:
    """:func:`exit_status` without printing (an MPI rank other than 0): 0 when done."""
    return {"diverged": EXIT_DIVERGED, "interrupted": EXIT_INTERRUPTED}.get(result.status, 0)
