"""Data parallelism on one machine, without MPI: ``nprnn train --procs N``.

The training loop runs in N processes: the command's own (rank 0, which alone writes
the run directory and prints) and N − 1 workers that :class:`LocalParallel` forks from
it when the loop starts. That is after the setup and the step-0 checkpoint, so every
worker starts from rank 0's memory: the same weights, optimizer state, batcher,
generators and carried state. The hooks are :mod:`.parallel`'s, as under MPI, so
``--procs N`` computes what ``mpiexec -n N`` computes (bit for bit at N = 2, where a
sum of two terms is the same in either order), and what one process computes to float
summation order.

Why processes. A training step of a small model is a few hundred NumPy calls, and
Python holds the GIL between them, so threads would mostly take turns. More BLAS
threads split only the matrix products, and they spin while they wait (on a busy
machine several times slower: docs/guides/speed.md). N processes each run a whole
step on B/N rows and meet once per step.

**The exchange** (:class:`Exchange`). Shared-memory files (``memfd``) hold a header
and two sets of N slots, a file per set; every process also has a pipe as its
doorbell. A collective works in four moves:

1. the process writes its buffer into its own slot;
2. it rings every other process's doorbell;
3. it waits, asleep in the kernel and never spinning, for N − 1 rings on its own;
4. it reads the N slots in rank order, so every process adds them up alike.

Consecutive collectives alternate between the two slot sets, so one barrier each
suffices: a set is written again (and its file grown, when a collective needs more
room) only after everyone has passed the barrier of the next collective, and so has
finished reading it.

**Faults.** A worker that raises writes one line into its record in the header, naming
itself, and rings every doorbell. Rank 0 then raises :class:`WorkerFailed`, which the
CLI prints as that line, with the status the error has in one process. While waiting,
each process checks every :data:`WAIT_S` seconds that the others are alive. Rank 0
reaps a worker that died (killed, out of memory) and ends the run with a line naming
it (exit status 1). A worker whose rank 0 is gone exits. In every case the run
directory keeps its last checkpoint, and ``--resume`` continues it.
"""

from __future__ import annotations

import mmap
import os
import select
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from .errors import UsageError, WorkerFailed
from .parallel import DataParallel, rows, summed

__all__ = [
    "LocalParallel",
    "Exchange",
    "supported",
    "usable_cores",
    "auto_procs",
    "resolve_procs",
    "MIN_ROWS",
]

MIN_ROWS = 16
"""``--procs 0`` gives each process at least this many rows of a batch. Measured on the
default run's step (docs/guides/speed.md): B = 32 took 0.65× the time of B = 64, and
B = 16 0.56–0.97× the time of B = 32: the gain shrinks with the rows (not measured
below 16; stream mode at 16 rows a process gained 1.5× over one process)."""

WAIT_S = 0.2
"""How often a waiting process checks that the others are alive (seconds)."""

_REC = 1024  # bytes of a process's record in the header: failed, status, length, line
_LINE = _REC - 24


class Aborted(Exception):
    """Raised in a worker when another process failed (that one reported why)."""


def supported() -> bool:
    """Whether ``--procs N > 1`` can run here: Linux (``fork`` and ``memfd_create``)."""
    return sys.platform.startswith("linux") and hasattr(os, "memfd_create")


def usable_cores(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU
    quota (a container's ``cpu.max``: "quota period", or "max") when there is one."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = n or 1
    try:
        quota, period = Path(cpu_max).read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return n


def auto_procs(batch_size: int, threads: int) -> int:
    """``--procs 0``: one process per usable core (per ``threads`` cores when each uses
    several BLAS threads; ``threads`` 0, the library's default, takes them all), each
    with at least :data:`MIN_ROWS` rows, and a count that divides ``batch_size``.

    1 where this process runs other Python threads (a notebook's kernel calling
    ``cli.main``): a fork copies their locks in whatever state they are, and Python
    3.12 warns that the child may deadlock. A ``--procs N`` given is still obeyed."""
    if not supported() or threads == 0 or threading.active_count() > 1:
        return 1
    limit = min(usable_cores() // threads, batch_size // MIN_ROWS)
    return max(n for n in range(1, max(limit, 1) + 1) if batch_size % n == 0)


def resolve_procs(opts, given: set, parallel):
    """Set ``opts.procs`` to the number of processes this run trains in (stored in its
    config) and return its :class:`.train.Parallel`: ``parallel`` itself under MPI or
    for one process, else a :class:`LocalParallel`. Raises :class:`UsageError` for a
    ``--procs`` that cannot run here."""
    n = opts.procs
    elsewhere = (
        f"mpiexec -n {parallel.size}" if parallel.size > 1
        else "--device cuda" if getattr(opts, "device", "cpu") == "cuda"
        else None
    )  # fmt: skip
    if elsewhere is not None:
        if n > 1 and "procs" in given:
            raise UsageError(
                f"--procs {n} with {elsewhere}: each process already has its own share",
                "drop --procs",
            )
        opts.procs = 1
        return parallel
    if n == 0:
        n = auto_procs(opts.batch_size, opts.threads)
    if n > 1 and not supported():
        raise UsageError(
            f"--procs {n} needs Linux (fork and shared memory), and this is {sys.platform}",
            "pass --procs 1, or use mpiexec -n N (pip install 'nprnn[mpi]')",
        )
    opts.procs = n
    return LocalParallel(n) if n > 1 else parallel


class LocalParallel(DataParallel):
    """The data-parallel hooks for ``size`` processes on this machine (module doc)."""

    members, member = "processes (--procs)", "process"
    fix = "another --procs"

    def __init__(self, size: int):
        super().__init__(0, size)
        self._ex = None
        self._batch_size = None

    def check_batch_size(self, batch_size: int) -> None:
        super().check_batch_size(batch_size)
        self._batch_size = batch_size

    def setup_done(self, model) -> None:
        self.install_masks(model)

    def run(self, loop):
        """Fork the workers, run ``loop`` here as rank 0, reap them; ``loop()``'s result."""
        ex = self._ex = Exchange(self.size)
        sys.stdout.flush()
        sys.stderr.flush()
        for r in range(1, self.size):
            pid = os.fork()
            if pid == 0:
                self._work(r, loop)  # never returns
            ex.pids[r] = pid
        ex.become(0)
        try:
            result = loop()
        except BaseException:
            ex.stop_workers()
            raise
        else:
            ex.join()
        finally:
            ex.close()
            self._buf = None  # (a view of a slot)
        return result

    def _work(self, rank: int, loop) -> None:
        status = 1
        try:
            self.rank, self.writes = rank, False
            self._ex.become(rank)
            loop()
            status = 0
        except Aborted:
            status = 1
        except KeyboardInterrupt:  # Ctrl-C twice: every process got it
            status = 130
        except BaseException as e:
            status = self._ex.fail(e)
        finally:
            os._exit(status)

    # ------------------------------------------------------------------ collectives

    def _buffer(self, n: int, dtype) -> np.ndarray:
        self._buf = self._ex.next_slot(n, dtype)  # packed in place: no copy into the slot
        return self._buf

    def _parts(self, buf):
        return self._ex.parts(buf)

    def gather_carry(self, carry):
        """The global carried state (rank 0; None elsewhere): each process writes its
        rows into zeros and the bit patterns are summed as integers, which is exact
        (signed zeros included): in every position only one process's bits are nonzero."""
        if carry is None:
            return None
        parts = carry if isinstance(carry, tuple) else (carry,)
        start, _ = rows(self._batch_size, self.size, self.rank)
        shapes = [(p.shape[0], self._batch_size, *p.shape[2:]) for p in parts]
        sizes = [int(np.prod(s)) for s in shapes]
        flat = np.zeros(sum(sizes), dtype=f"u{parts[0].dtype.itemsize}")
        off = 0
        for p, s, k in zip(parts, shapes, sizes, strict=True):
            view = flat[off : off + k].view(p.dtype).reshape(s)
            view[:, start : start + p.shape[1]] = p
            off += k
        got = self._ex.parts(flat)
        if self.rank != 0:
            return None
        total = summed(got)
        joined, off = [], 0
        for p, s, k in zip(parts, shapes, sizes, strict=True):
            joined.append(total[off : off + k].view(p.dtype).reshape(s))
            off += k
        return tuple(joined) if isinstance(carry, tuple) else joined[0]


class Exchange:
    """The shared memory and doorbells of ``size`` processes (see the module doc); made
    in rank 0 before it forks, and inherited."""

    def __init__(self, size: int):
        self.size, self.rank = size, 0
        self.parent = os.getpid()
        self.pids: dict[int, int] = {}  # rank -> pid, in rank 0
        head = os.memfd_create("nprnn-procs")
        os.ftruncate(head, size * _REC)
        self._head = mmap.mmap(head, size * _REC)
        os.close(head)  # the mapping stays
        # one file per slot set: a set grows only when no process can be reading it
        self._files = [os.memfd_create(f"nprnn-procs-{p}") for p in (0, 1)]
        self._maps, self._caps = [None, None], [0, 0]
        self._bells = [os.pipe() for _ in range(size)]
        self._count = 0  # collectives so far: their parity picks the slot set
        self._handed = None  # the slot next_slot gave out for the next collective

    def become(self, rank: int) -> None:
        """Keep only this process's end of the doorbells (after forking)."""
        self.rank = rank
        for r, (rd, _) in enumerate(self._bells):
            if r != rank:
                os.close(rd)
        os.set_blocking(self._bells[rank][0], False)

    # ------------------------------------------------------------------ slots

    def _views(self, phase: int, n: int, dtype) -> list:
        """The N slots of slot set ``phase`` for ``n`` elements of ``dtype``, the file
        grown first if it is too small (every process grows it to the same size)."""
        dtype = np.dtype(dtype)
        stride = -(-n * dtype.itemsize // 64) * 64
        need = max(self.size * stride, 64)
        if need > self._caps[phase]:
            fd = self._files[phase]
            if os.fstat(fd).st_size < need:
                os.ftruncate(fd, need)
            self._maps[phase], self._caps[phase] = mmap.mmap(fd, need), need
        m = self._maps[phase]
        return [np.frombuffer(m, dtype, n, r * stride) for r in range(self.size)]

    def next_slot(self, n: int, dtype) -> np.ndarray:
        """This process's slot for the next collective (``n`` elements of ``dtype``):
        a buffer filled there is not copied again by :meth:`parts`."""
        self._handed = self._views(self._count & 1, n, dtype)[self.rank]
        return self._handed

    def parts(self, buf: np.ndarray) -> list:
        """Every process's ``buf`` (1-D, the same size and dtype in all), in rank order,
        once all have written theirs. The views are valid until the next collective."""
        views = self._views(self._count & 1, buf.size, buf.dtype)
        self._count += 1
        if buf is not self._handed:
            views[self.rank][...] = buf
        self._handed = None
        self.barrier()
        return views

    # ------------------------------------------------------------------ barrier

    def barrier(self) -> None:
        """Return once every process has called it as often as this one has."""
        for r in range(self.size):
            if r != self.rank:
                self._ring(r)
        fd, need = self._bells[self.rank][0], self.size - 1
        while need:
            try:
                need -= len(os.read(fd, need))
                continue
            except BlockingIOError:
                pass
            ready, _, _ = select.select([fd], [], [], WAIT_S)
            if not ready:
                self._check_peers()
            self._check_failed()
        self._check_failed()

    def _ring(self, r: int) -> None:
        try:
            os.write(self._bells[r][1], b"\x01")
        except BrokenPipeError:  # process r is gone: its death is found below
            self._check_peers()

    def _record(self, r: int) -> np.ndarray:
        return np.frombuffer(self._head, np.int64, 3, r * _REC)

    def _check_failed(self) -> None:
        for r in range(self.size):
            failed, status, length = self._record(r)
            if failed and r != self.rank:
                if self.rank != 0:
                    raise Aborted()
                start = r * _REC + 24
                line = bytes(self._head[start : start + int(length)]).decode("utf-8", "replace")
                raise WorkerFailed(line, int(status))

    def _check_peers(self) -> None:
        if self.rank != 0:
            if os.getppid() != self.parent:
                raise Aborted()
            return
        self._reap(ended_ok=False)

    def _reap(self, *, ended_ok: bool) -> None:
        """Rank 0: reap the workers that have ended. One that failed, or any at all
        while the others still train (``ended_ok`` False), raises :class:`WorkerFailed`
        (its own line when it reported one before it went)."""
        for r, pid in list(self.pids.items()):
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                del self.pids[r]
                if code != 0 or not ended_ok:
                    self._check_failed()
                    raise WorkerFailed(f"process {r} of {self.size} {_how(code)}", 1)

    # ------------------------------------------------------------------ ending

    def fail(self, e: BaseException) -> int:
        """In a worker: record ``e`` as one line naming this process, wake everyone, and
        return the exit status the error has in one process."""
        from .cli import describe  # the CLI's own rendering of an error

        described = describe(e)
        if described is None:  # a bug: its traceback, as an uncaught exception shows it
            traceback.print_exc()
            sys.stderr.flush()
            line, status = f"{type(e).__name__}: {' '.join(str(e).split())}", 1
        else:
            line, status = described
        text = f"process {self.rank} of {self.size}: {line} (stopping the run)"
        data = text.encode("utf-8")[:_LINE]
        start = self.rank * _REC
        self._head[start + 24 : start + 24 + len(data)] = data
        rec = self._record(self.rank)
        rec[1:] = (status, len(data))
        rec[0] = 1  # last: a reader that sees the flag finds the line complete
        for r in range(self.size):
            if r != self.rank:
                try:
                    os.write(self._bells[r][1], b"\x01" * self.size)
                except BrokenPipeError:
                    pass
        return status

    def stop_workers(self) -> None:
        """Rank 0 failed or was interrupted: end the workers now and reap them."""
        for pid in self.pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.pids.values():
            os.waitpid(pid, 0)
        self.pids.clear()

    def close(self) -> None:
        """Close this process's files and doorbell ends (the workers are gone by then).
        The mappings go with the last array viewing them."""
        for fd in (*self._files, *self._bells[self.rank]):
            os.close(fd)
        for r, (_, wr) in enumerate(self._bells):
            if r != self.rank:
                os.close(wr)
        self._head, self._maps, self._files, self._bells = None, [None, None], [], []

    def join(self, timeout: float = 30.0) -> None:
        """Reap the workers after the loop (they end with it); a worker that failed
        after the last collective still raises :class:`WorkerFailed`."""
        deadline = time.monotonic() + timeout
        while self.pids:
            self._reap(ended_ok=True)
            if self.pids and time.monotonic() > deadline:
                self.stop_workers()
                raise WorkerFailed(f"a worker did not end within {timeout:g} s", 1)
            if self.pids:
                time.sleep(0.001)


def _how(code: int) -> str:
    """How a reaped worker ended, for a message."""
    if os.WIFSIGNALED(code):
        sig = os.WTERMSIG(code)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"died (killed by signal {sig}, {name}): the run keeps its last checkpoint"
    return f"exited with status {os.WEXITSTATUS(code)} while the others trained"
