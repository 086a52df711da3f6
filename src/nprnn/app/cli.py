"""The ``nprnn`` command line: train, sample, eval, task, predict, viz, plot, bench, repair.

Each command's options are declared in :mod:`.options`; this module picks the command,
parses its options, limits the BLAS threads, runs it and turns every error into the
documented exit status. Exit status: 0 success; 2 bad input — a missing, empty or
undecodable file, a bad option, a corrupted or foreign run, unseen characters, an
unwritable or occupied ``--out``, a step that would not fit in memory — reported as ONE
line on stderr, ``nprnn: error: what is wrong — what to do``, with nothing overwritten;
3 training diverged (the last good checkpoint is kept; resume with a lower ``--lr``);
130 interrupted by Ctrl-C (a checkpoint of the current step is saved; continue with
``--resume``).
"""

from __future__ import annotations

import argparse
import sys

from . import options as O
from .declare import parse
from .errors import AppError, CheckpointError, UsageError, WorkerFailed

__all__ = ["main", "set_blas_threads", "keep_freed_memory", "COMMANDS"]

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130

# name -> (help, module, function that picks (options class, prog, handler) from argv)
COMMANDS = {
    "train": "train a character language model (--task classify: a sequence classifier)",
    "sample": "generate text from a trained run",
    "eval": "score a text with a trained run (or a classifier on labelled lines)",
    "task": "long-range memory tasks: adding, copy, grad-norms",
    "predict": "label probabilities from a classifier run",
    "viz": "HTML page of a model's activations, character by character",
    "plot": "training and validation loss of a run (PNG)",
    "bench": "time the layers against PyTorch",
    "repair": "rewrite a run's damaged config.json / weight copies from its checkpoint",
}


def _resolve(argv: list[str]):
    """``(options class, prog, handler, argv for the options)`` of the command in argv."""
    cmd, rest = argv[0], argv[1:]
    if cmd == "train":
        pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        pre.add_argument("--task")
        task = pre.parse_known_args(rest)[0].task
        if task == "classify":
            from .classify import cmd_train

            return O.TrainClassifier, "nprnn train --task classify", cmd_train, rest
        from .lmcli import cmd_train

        return O.TrainLM, "nprnn train", cmd_train, rest
    if cmd == "task":
        from . import gradnorms, tasks

        names = {"adding": O.TaskAdding, "copy": O.TaskCopy, "grad-norms": O.GradNorms}
        if not rest or rest[0] not in names:
            if rest and rest[0] in ("-h", "--help"):
                print(
                    "usage: nprnn task {adding,copy,grad-norms} [options]; "
                    "nprnn task NAME --help lists a task's options"
                )
                raise SystemExit(0)
            raise UsageError(
                f"nprnn task needs one of {', '.join(names)}, got "
                f"{rest[0] if rest else 'nothing'!r}",
                "see 'nprnn task adding --help'",
            )
        handler = gradnorms.cmd_grad_norms if rest[0] == "grad-norms" else tasks.cmd_train
        return names[rest[0]], f"nprnn task {rest[0]}", handler, rest[1:]
    if cmd == "eval":
        from .classify import is_classifier_run

        if any(is_classifier_run(a) for a in rest if not a.startswith("-")):
            from .classify import cmd_eval

            return O.Eval, "nprnn eval", cmd_eval, rest
    if cmd in ("sample", "eval", "repair"):
        from . import lmcli

        handler = {"sample": lmcli.cmd_sample, "eval": lmcli.cmd_eval, "repair": lmcli.cmd_repair}[
            cmd
        ]
        return (
            {"sample": O.Sample, "eval": O.Eval, "repair": O.Repair}[cmd],
            f"nprnn {cmd}",
            handler,
            rest,
        )
    if cmd == "predict":
        from .classify import cmd_predict

        return O.Predict, "nprnn predict", cmd_predict, rest
    if cmd in ("viz", "plot"):
        from . import viz

        return (
            (O.Viz, "nprnn viz", viz.cmd_viz, rest)
            if cmd == "viz"
            else (O.Plot, "nprnn plot", viz.cmd_plot, rest)
        )
    from . import bench

    return O.Bench, "nprnn bench", bench.cmd_bench, rest


def _top_help() -> str:
    lines = [
        "usage: nprnn {" + ",".join(COMMANDS) + "} ...",
        "",
        "Recurrent networks in NumPy: character language models, sequence classifiers, "
        "long-range memory tasks.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<9} {text}" for name, text in COMMANDS.items()]
    lines += [
        "",
        "nprnn COMMAND --help lists a command's options; nprnn --version prints the",
        "version, the array backend and its BLAS.",
    ]
    return "\n".join(lines)


_blas_default: list[int] = []  # the BLAS's own thread count, read before the first limit


def set_blas_threads(n: int) -> bool:
    """Limit NumPy's BLAS to ``n`` threads (via threadpoolctl); 0: its own default.

    One recurrent step multiplies small matrices, where BLAS threads that spin waiting
    for work make a busy machine several times slower; on an idle 2-core machine two
    threads were faster in some minutes and slower in others (docs/guides/speed.md).
    """
    from threadpoolctl import ThreadpoolController

    blas = ThreadpoolController().select(user_api="blas")
    if not _blas_default:
        _blas_default.extend(lib["num_threads"] for lib in blas.info())
    blas.limit(limits=n or max(_blas_default, default=1))
    return True


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse: arrays up to 32 MB come from the
    heap (``M_MMAP_THRESHOLD``) and up to 128 MB of free heap stays mapped
    (``M_TRIM_THRESHOLD``). Returns whether it applied (glibc only).

    A training step frees and allocates again arrays of 0.1–1 MB (logits, dropout
    masks, gradients) that the kernels' pool leaves to NumPy. glibc's default serves
    arrays above an adaptive threshold (128 KB at first) with fresh pages from the
    system and returns them on free. Measured on the default ``nprnn train`` (1000
    steps): page faults 51,000 → 25,000, wall time 0.95× (farm-bench, median of 5
    pairs), the same peak memory (per-step gathers, tried for the embedding, faulted
    about 400,000 times without it and 24,000 with it). A process-wide choice, so the
    command makes it, not the library (``MALLOC_MMAP_THRESHOLD_`` and
    ``MALLOC_TRIM_THRESHOLD_`` do the same for a program of your own).
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 128 << 20)
    )


def _render(e: BaseException) -> str:
    if isinstance(e, AppError):
        fix = e.fix or (
            "the run directory is damaged or foreign; restore it or retrain"
            if isinstance(e, CheckpointError)
            else "check the command's options (nprnn --help)"
        )
        return f"{e.what} — {fix}"
    if isinstance(e, OSError) and e.filename:
        return f"{e.strerror or e} ({e.filename}) — check the path and its permissions"
    msg = " ".join(str(e).split()) or type(e).__name__
    return f"{msg} — check the command's options (nprnn --help)"


def main(argv=None) -> int:
    """Run ``nprnn`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "--version":
            from .. import __version__
            from ..backends import current

            info = current().info()
            print(
                f"nprnn {__version__} (backend {info.pop('backend')}: "
                + ", ".join(f"{k} {v}" for k, v in info.items())
                + ")"
            )
            return 0
        if not argv or argv[0] in ("-h", "--help"):
            print(_top_help())
            return 0 if argv else EXIT_USAGE
        if argv[0] not in COMMANDS:
            raise UsageError(
                f"unknown command {argv[0]!r} (choose from {', '.join(COMMANDS)})",
                "see 'nprnn --help'",
            )
        cls, prog, handler, rest = _resolve(argv)
        opts, given = parse(cls, rest, prog)
        keep_freed_memory()
        if argv[0] != "bench":  # bench sets threads itself (--threads)
            n = getattr(opts, "threads", 1)
            if n:
                set_blas_threads(n)
        if getattr(opts, "device", "cpu") == "cuda":
            use_cuda()  # before the handler: without a GPU nothing is written
        return handler(opts, given)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except WorkerFailed as e:  # --procs N: a worker's own line and status
        return _report(e.line, e.status)
    except (KeyboardInterrupt, MemoryError, AppError, ValueError, TypeError, OSError) as e:
        return _report(*describe(e))


def describe(e: BaseException) -> tuple[str, int] | None:
    """``(line, exit status)`` of an error the CLI reports in one line, or None for one
    it does not expect (a bug: its traceback is shown). Used by :func:`main`, and by a
    ``--procs`` worker (:mod:`.local`) to report its error as one process would."""
    if isinstance(e, KeyboardInterrupt):  # outside the training loop (which has its own)
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(e, MemoryError):  # a model or batch too large for this machine
        detail = f" ({' '.join(str(e).split())})" if str(e) else ""
        return (
            f"error: out of memory{detail} — use a smaller model or batch (--hidden, "
            "--layers, --batch-size, --seq-len, --n)",
            EXIT_USAGE,
        )
    if isinstance(e, (AppError, ValueError, TypeError, OSError)):
        return f"error: {_render(e)}", EXIT_USAGE
    return None


def use_cuda() -> None:
    """``--device cuda``: run the kernels on the ``cupy`` backend, or a :class:`UsageError`
    (exit 2, one line) saying what is missing when CuPy or a CUDA device is not there."""
    from ..backends import set_backend

    try:
        set_backend("cupy")
    except (ImportError, RuntimeError) as e:
        raise UsageError(
            f"--device cuda: {e}",
            "install CuPy (pip install 'nprnn[cupy]') on a machine with an NVIDIA GPU, "
            "or use --device cpu",
        ) from None


def _report(line: str, status: int) -> int:
    """Print ``nprnn: line`` on stderr and return ``status``. Under ``mpiexec`` with
    several ranks (see :mod:`.mpi`): during setup only the rank that should speak
    prints (the errors are the same everywhere); once training runs, the line names
    the rank and the whole job is aborted, so that no other rank waits forever."""
    from nprnn import distributed as dist

    if dist.launched() and dist.size() > 1:
        from . import mpi

        if mpi.started():
            mpi.fail(line, status)
        if not mpi.should_report_setup_error():
            return status
    print(f"nprnn: {line}", file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
