"""``nprnn bench``: the speed table of the recurrent kernels.

For each shape it times one float32 training step of one layer with F = H (forward and
backward over the whole sequence, random upstream gradient on the output) and prints,
side by side in the same run:

- nprnn: median time over ``--repeat`` runs, GFLOP/s, peak extra memory;
- floor: the same sequence of GEMMs timed alone (input projection, T recurrent GEMMs
  forward and T backward, dx, dW_ih, dW_hh) — what the step would cost if the
  element-wise gate work were free; ``elementwise`` is nprnn minus the floor;
- recurrent GEMMs: the rate of the two per-step GEMMs alone (forward (G·H, H) @ (H, B),
  backward (H, G·H) @ (G·H, B)) in NumPy's BLAS, and in torch's BLAS in the layout
  torch's own step uses ((B, H) @ (H, G·H) and (B, G·H) @ (G·H, H)): these skinny
  GEMMs are where the two libraries' BLAS differ most;
- torch: ``torch.nn.LSTM/GRU/RNN`` forward + autograd backward (if torch is installed);
- notebook: the notebook's algorithm in float64 — the plain per-step loop of the
  reference cells (:func:`nprnn.kernels.reference.forward` / ``backward``): per-step
  input and recurrent GEMMs, per-step weight-gradient GEMMs, no buffers kept between
  steps (the seed's own code also concatenated [a; x] and ran one GEMM per gate).

Then the workloads users spend their time on (:mod:`nprnn.app.benchwork`): generating
characters one at a time from a 2×256 stream LSTM (B = 1), and the char-LM training
step at the CLI's default shape, in one process and in the ``--procs`` processes
``nprnn train`` uses by default, each against torch doing the same work in the same run.
The header names the backend and the BLAS that ran.

FLOPs are counted as 6·G·H·(F+H)·B per step (G, the cell's gates: 4 LSTM, 3 GRU, 1 RNN):
2 for the forward GEMMs and 4 for the backward ones. The machine is shared and noisy: compare
ratios measured in the same run, not absolute times across runs.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import tracemalloc

import numpy as np

import nprnn
from nprnn import functional as Fn
from nprnn.kernels import reference
from nprnn.kernels.cells import get_cell

from .models import cell_of

__all__ = ["SHAPES", "run", "format_table", "format_workloads", "main", "cmd_bench", "cell_for"]

SHAPES = [  # (cell, H, B, T, nonlinearity)
    ("lstm", 256, 64, 150, "tanh"),
    ("lstm", 512, 32, 25, "tanh"),
    ("lstm", 1024, 16, 25, "tanh"),
    ("lstm", 128, 1, 100, "tanh"),
    ("gru", 512, 32, 50, "tanh"),
    ("rnn", 1024, 32, 50, "relu"),
]


def cell_for(model: str, nonlinearity: str = "tanh"):
    """The registered cell a bench row runs (the RNN's nonlinearity picks its cell)."""
    return get_cell("rnn_" + nonlinearity) if model == "rnn" else cell_of(model)


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up: first-touch allocations, BLAS thread start
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _peak_bytes(fn) -> int:
    """Peak memory NumPy allocates while ``fn`` runs (NumPy reports to tracemalloc),
    counting the kernels' reused buffers (freed first, so that ``fn`` allocates them)."""
    nprnn.release_workspace()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _weights(cell, H, F, dtype, rng):
    k = 1 / np.sqrt(H)
    return [rng.uniform(-k, k, s).astype(dtype) for s in cell.param_shapes(F, H).values()]


def _nprnn_step(cell, x, w, dout):
    def step():
        _, _, cache = Fn.sequence_forward(cell, x, None, w)
        Fn.sequence_backward(dout, None, cache)

    return step


def _floor_step(cell, H, B, T, dtype, rng):
    """The GEMMs of one training step, in nprnn's shapes, and nothing else."""
    G = cell.gates * H
    F = H
    x = rng.standard_normal((T * B, F)).astype(dtype)
    w_ih = rng.standard_normal((G, F)).astype(dtype)
    w_hh = rng.standard_normal((G, H)).astype(dtype)
    h = rng.standard_normal((H, B)).astype(dtype)
    rec = np.empty((G, B), dtype=dtype)
    dg = rng.standard_normal((G, T * B)).astype(dtype)
    dh = np.empty((H, B), dtype=dtype)

    def step():
        np.matmul(w_ih, x.T)
        for _ in range(T):
            np.matmul(w_hh, h, out=rec)
        for t in range(T):
            np.matmul(w_hh.T, dg[:, t * B : (t + 1) * B], out=dh)
        np.matmul(dg.T, w_ih)
        np.matmul(dg, x)
        np.matmul(dg, x)  # dW_hh has the same shape as dW_ih when F = H

    return step


_STEP_GEMM_LOOPS = 10  # per timed run: one pair of per-step GEMMs is too short to time


def _step_gemm_gflops(cell, H, B, dtype, rng, repeat, torch_):
    """GFLOP/s of the forward + backward per-step GEMMs, NumPy and (or None) torch."""
    G = cell.gates * H
    w = rng.standard_normal((G, H)).astype(dtype)
    h = rng.standard_normal((H, B)).astype(dtype)
    d = rng.standard_normal((G, B)).astype(dtype)
    rec, dh = np.empty((G, B), dtype=dtype), np.empty((H, B), dtype=dtype)
    flops = 2 * 2 * G * H * B * _STEP_GEMM_LOOPS

    def numpy_pair():
        for _ in range(_STEP_GEMM_LOOPS):
            np.dot(w, h, out=rec)
            np.dot(w.T, d, out=dh)

    rates = [flops / _median_time(numpy_pair, repeat) / 1e9, None]
    try:
        import torch
    except ImportError:
        torch_ = False
    if torch_:
        tw, th, td = (torch.from_numpy(np.ascontiguousarray(a)) for a in (w, h.T, d.T))
        trec, tdh = torch.empty((B, G), dtype=tw.dtype), torch.empty((B, H), dtype=tw.dtype)

        def torch_pair():
            for _ in range(_STEP_GEMM_LOOPS):
                torch.mm(th, tw.t(), out=trec)
                torch.mm(td, tw, out=tdh)

        rates[1] = flops / _median_time(torch_pair, repeat) / 1e9
    return rates


def _torch_step(cell, H, B, T, x, dout):
    try:
        import torch
    except ImportError:
        return None
    if cell.torch is None:  # a cell torch does not have
        return None
    cls = getattr(torch.nn, cell.torch)
    kw = {"nonlinearity": cell.name[4:]} if cell.torch == "RNN" else {}
    mod = cls(H, H, **kw)
    xt = torch.tensor(x, requires_grad=True)
    dt = torch.tensor(dout)

    def step():
        mod.zero_grad()
        xt.grad = None
        out, _ = mod(xt)
        out.backward(dt)

    return step


def _notebook_step(cell, H, B, T, rng):
    """The reference cells' plain per-step loop in float64, forward and backward."""
    F = H
    x = rng.standard_normal((T, B, F))
    w = _weights(cell, H, F, np.float64, rng)
    dout = rng.standard_normal((T, B, H))

    def step():
        state = tuple(np.zeros((B, H)) for _ in cell.states)
        _, fin, rec = reference.forward(cell, x, state, w)
        reference.backward(cell, w, rec, dout, tuple(np.zeros_like(s) for s in fin))

    return step


def _gemm_rate(dtype=np.float32, n=2048, repeat=5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    return 2 * n**3 / _median_time(lambda: a @ a, repeat) / 1e9


def run(*, repeat=5, notebook=True, torch_=True, cells=None, seed=0, shapes=SHAPES):
    """Measure every shape; return a list of row dicts (times in seconds)."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, H, B, T, nl in shapes:
        if cells and model not in cells:
            continue
        cell = cell_for(model, nl)
        F = H
        dtype = np.float32
        x = rng.standard_normal((T, B, F)).astype(dtype)
        dout = rng.standard_normal((T, B, H)).astype(dtype)
        w = _weights(cell, H, F, dtype, rng)
        flops = 6 * cell.gates * H * (F + H) * B * T
        step = _nprnn_step(cell, x, w, dout)
        row = {"cell": model if model != "rnn" else f"rnn-{nl}", "H": H, "B": B, "T": T}
        row["nprnn_s"] = _median_time(step, repeat)
        row["nprnn_gflops"] = flops / row["nprnn_s"] / 1e9
        row["nprnn_peak_mb"] = _peak_bytes(step) / 2**20
        row["floor_s"] = _median_time(_floor_step(cell, H, B, T, dtype, rng), repeat)
        row["elementwise_s"] = max(row["nprnn_s"] - row["floor_s"], 0.0)
        row["step_gemm_gflops"], row["torch_step_gemm_gflops"] = _step_gemm_gflops(
            cell, H, B, dtype, rng, repeat, torch_
        )
        tstep = _torch_step(cell, H, B, T, x, dout) if torch_ else None
        row["torch_s"] = _median_time(tstep, repeat) if tstep else None
        row["torch_over_nprnn"] = row["torch_s"] / row["nprnn_s"] if tstep else None
        if notebook:
            nb = _notebook_step(cell, H, B, T, rng)
            row["notebook_s"] = _median_time(nb, max(1, min(repeat, 3)))
            row["notebook_over_nprnn"] = row["notebook_s"] / row["nprnn_s"]
        else:
            row["notebook_s"] = row["notebook_over_nprnn"] = None
        rows.append(row)
    return rows


CUDA_SHAPES = [s for s in SHAPES if s[0] != "lstm" or s[3] > 1] + [("lstm", 1024, 256, 100, "tanh")]
"""``--device cuda``: the training-step rows (less B=1), plus a GPU-sized LSTM."""


def run_cuda(*, repeat=5, torch_=True, cells=None, seed=0, shapes=None):
    """``--device cuda``: one float32 training step (forward + backward) per shape on
    the ``cupy`` backend (the caller has selected it), against ``torch.nn`` on cuda
    (cuDNN) when torch sees a GPU. Each timing ends with a device synchronize; only
    the timings come back to the host. Returns row dicts (times in seconds)."""
    import cupy  # noqa: PLC0415 - only on --device cuda, after the backend is chosen

    def timed(fn, sync):
        def run():
            fn()
            sync()

        return _median_time(run, repeat)

    torch = None
    if torch_:
        try:
            import torch  # noqa: PLC0415

            if not torch.cuda.is_available():
                torch = None
        except ImportError:
            torch = None
    rng = np.random.default_rng(seed)
    rows = []
    for model, H, B, T, nl in shapes or CUDA_SHAPES:
        if cells and model not in cells:
            continue
        cell = cell_for(model, nl)
        dtype = np.float32
        x = rng.standard_normal((T, B, H)).astype(dtype)
        dout = rng.standard_normal((T, B, H)).astype(dtype)
        w = [cupy.asarray(a) for a in _weights(cell, H, H, dtype, rng)]
        xd, dd = cupy.asarray(x), cupy.asarray(dout)
        flops = 6 * cell.gates * H * (H + H) * B * T
        row = {"cell": model if model != "rnn" else f"rnn-{nl}", "H": H, "B": B, "T": T}
        row["nprnn_s"] = timed(_nprnn_step(cell, xd, w, dd), cupy.cuda.Device().synchronize)
        row["nprnn_gflops"] = flops / row["nprnn_s"] / 1e9
        row["torch_s"] = row["torch_gflops"] = row["torch_over_nprnn"] = None
        if torch is not None and cell.torch is not None:
            cls = getattr(torch.nn, cell.torch)
            kw = {"nonlinearity": nl} if cell.torch == "RNN" else {}
            mod = cls(H, H, **kw).cuda()
            xt = torch.tensor(x, device="cuda", requires_grad=True)
            dt = torch.tensor(dout, device="cuda")

            def tstep(mod=mod, xt=xt, dt=dt):
                mod.zero_grad()
                xt.grad = None
                out, _ = mod(xt)
                out.backward(dt)

            row["torch_s"] = timed(tstep, torch.cuda.synchronize)
            row["torch_gflops"] = flops / row["torch_s"] / 1e9
            row["torch_over_nprnn"] = row["torch_s"] / row["nprnn_s"]
        rows.append(row)
    return rows


def format_cuda_table(rows) -> str:
    """The ``--device cuda`` rows as a text table."""
    lines = [
        f"{'cell':10} {'H':>5} {'B':>4} {'T':>4} {'nprnn ms':>9} {'GFLOP/s':>8} "
        f"{'torch ms':>9} {'GFLOP/s':>8} {'torch/nprnn':>11}"
    ]
    for r in rows:
        t = r["torch_s"]
        lines.append(
            f"{r['cell']:10} {r['H']:>5} {r['B']:>4} {r['T']:>4} {r['nprnn_s'] * 1e3:>9.2f} "
            f"{r['nprnn_gflops']:>8.0f} "
            + (
                f"{t * 1e3:>9.2f} {r['torch_gflops']:>8.0f} {r['torch_over_nprnn']:>11.2f}"
                if t
                else f"{'-':>9} {'-':>8} {'-':>11}"
            )
        )
    return "\n".join(lines)


def _fmt_ms(s):
    return "—" if s is None else f"{s * 1e3:.1f}"


def _fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}"


def _fmt_rates(r):
    t = r["torch_step_gemm_gflops"]
    return f"{r['step_gemm_gflops']:.0f} / " + ("—" if t is None else f"{t:.0f}")


def format_table(rows, gemm_gflops) -> str:
    head = (
        "| cell | H | B | T | nprnn ms | GFLOP/s | peak MB | GEMM floor ms | elementwise ms "
        "| step GEMM GFLOP/s numpy/torch | torch ms | torch/nprnn | notebook ms "
        "| notebook/nprnn |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['H']} | {r['B']} | {r['T']} | {_fmt_ms(r['nprnn_s'])} "
            f"| {r['nprnn_gflops']:.1f} | {r['nprnn_peak_mb']:.0f} | {_fmt_ms(r['floor_s'])} "
            f"| {_fmt_ms(r['elementwise_s'])} | {_fmt_rates(r)} | {_fmt_ms(r['torch_s'])} "
            f"| {_fmt_ratio(r['torch_over_nprnn'])} | {_fmt_ms(r['notebook_s'])} "
            f"| {_fmt_ratio(r['notebook_over_nprnn'])} |"
        )
    lines.append("")
    lines.append(f"large-GEMM rate of this machine (float32, 2048³): {gemm_gflops:.0f} GFLOP/s")
    return "\n".join(lines)


def format_workloads(work) -> str:
    """The workload rows: nprnn, torch, and the ratio (>1: nprnn faster)."""
    lines = ["| workload | unit | nprnn | torch | nprnn speed-up |", "|---|---|---|---|---|"]
    for w in work:
        t = "—" if w["torch"] is None else f"{w['torch']:.1f}"
        lines.append(f"| {w['workload']} | {w['unit']} | {w['nprnn']:.1f} | {t} "
                     f"| {_fmt_ratio(w['ratio'])} |")  # fmt: skip
    return "\n".join(lines)


def _limit_threads(n: int) -> None:
    """Give NumPy's BLAS and torch the same number of threads."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def main(argv=None) -> int:
    """``nprnn bench [options]`` (options: :class:`nprnn.app.options.Bench`)."""
    from .declare import parse
    from .options import Bench

    opts, given = parse(Bench, sys.argv[1:] if argv is None else argv, "nprnn bench")
    return cmd_bench(opts, given)


def cmd_bench(args, given=()) -> int:
    """Time the shapes and print the table (or JSON)."""
    if args.threads:
        _limit_threads(args.threads)
    if getattr(args, "device", "cpu") == "cuda":
        if nprnn.backends.current().device != "cuda":
            from .cli import use_cuda  # noqa: PLC0415 - raises the one-line error

            use_cuda()
        rows = run_cuda(repeat=args.repeat, torch_=not args.no_torch, cells=args.cell)
        if args.json:
            print(json.dumps({"meta": nprnn.backends.current().info(), "rows": rows}, indent=2))
        else:
            print(format_cuda_table(rows))
            print(f"backend cupy: {nprnn.backends.current().info()}; median of {args.repeat}")
        return 0
    gemm = _gemm_rate()
    rows = run(
        repeat=args.repeat,
        notebook=not args.no_notebook,
        torch_=not args.no_torch,
        cells=args.cell,
        shapes=SHAPES,
    )
    work = []
    if not args.no_workloads:
        from . import benchwork

        fns = list(benchwork.WORKLOADS.values())
        if args.threads:  # torch at that many threads: --procs' cores would be no like
            fns.remove(benchwork.train_step_procs)
        work = [fn(repeat=max(1, min(args.repeat, 3)), torch_=not args.no_torch) for fn in fns]
        work = [row for row in work if row is not None]
    try:
        import torch

        torch_version = torch.__version__
        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_version, torch_threads = None, None
    info = nprnn.backends.current().info()
    meta = {
        "backend": info["backend"],
        "blas": info.get("blas"),
        "numpy": np.__version__,
        "torch": torch_version,
        "torch_threads": torch_threads,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "gemm_gflops": gemm,
        "repeat": args.repeat,
        "blas_threads": args.threads or None,
    }
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows, "workloads": work}, indent=2))
    else:
        print(format_table(rows, gemm))
        if work:
            print()
            print(format_workloads(work))
        blas = args.threads or "default"
        print(
            f"backend {meta['backend']} ({meta['blas']}); "
            f"numpy {meta['numpy']} (BLAS threads: {blas}), torch {meta['torch']} "
            f"({torch_threads} threads), {meta['cpus']} CPUs; median of {args.repeat} runs"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
