"""Data-parallel scaling of ``nprnn train`` under MPI on this machine: 1 rank against N.

    python benchmarks/mpi_scaling.py --data /work/shared/data/tinyshakespeare.txt

For each rank count it runs the whole command, ``mpiexec -n N nprnn train --mode stream
--hidden 256 --layers 2 --batch-size 64 --seq-len 100 ...`` (one BLAS thread per rank),
twice: once for ``--steps SHORT`` and once for ``--steps LONG`` steps, with no
evaluation in between. The difference of the two wall times over ``LONG - SHORT`` is
the time of one training step with start-up, data preparation and the final checkpoint
cancelled out. Rounds alternate the rank counts (1, N, 1, N, ...) so that background
load on a shared machine falls on both; the figures are medians over the rounds.

Under N > 1 ranks, ``NPRNN_MPI_PROFILE`` makes every rank record, per step, the wait
for the slowest rank (a barrier) and the allreduce itself; their medians over the
ranks and steps of the long runs give the allreduce's share of a step.

Prints one table: steps/s, characters/s (global batch × seq-len per step), the speed-up
over 1 rank, and the allreduce share. Then the cost model of README's "Distributed
training" for the model measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MPIEXEC = Path(sys.executable).parent / "mpiexec"


def _train(n: int, steps: int, args, out: Path, profile: Path | None) -> float:
    """Wall time of one ``mpiexec -n n nprnn train`` of ``steps`` steps."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("NPRNN_MPI_PROFILE", None)
    if profile is not None:
        env["NPRNN_MPI_PROFILE"] = str(profile)
    cmd = [str(MPIEXEC), "-n", str(n), sys.executable, "-m", "nprnn", "train",
           "--data", args.data, "--mode", "stream", "--model", "lstm",
           "--hidden", str(args.hidden), "--layers", str(args.layers),
           "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
           "--steps", str(steps), "--eval-every", str(steps), "--dropout", "0",
           "--samples", "0", "--threads", "1", "--quiet", "--force", "--out", str(out),
           "--seed", "0"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _profile(d: Path) -> tuple[float, float, float, int]:
    """Median step, wait and allreduce seconds over the ranks' recorded steps; floats."""
    step, wait, red, floats = [], [], [], 0
    for f in sorted(d.glob("rank*.json")):
        p = json.loads(f.read_text())
        step += p["step_s"][1:]  # the first step includes the first allocations
        wait += p["wait_s"][1:]
        red += p["allreduce_s"][1:]
        floats = p["floats"]
    return statistics.median(step), statistics.median(wait), statistics.median(red), floats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="training text (tiny-shakespeare)")
    ap.add_argument("--ranks", type=int, default=2, help="N, compared with 1 (default: 2)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--short", type=int, default=5, help="steps of the short run")
    ap.add_argument("--long", type=int, default=35, help="steps of the long run")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if not MPIEXEC.exists():
        sys.exit(f"mpi_scaling: no {MPIEXEC}: pip install -e '.[mpi]' in this environment")

    per_step = {1: [], args.ranks: []}
    prof = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for r in range(args.rounds):
            for n in per_step:
                pdir = tmp / f"prof{n}-{r}" if n > 1 else None
                t_short = _train(n, args.short, args, tmp / "run", None)
                t_long = _train(n, args.long, args, tmp / "run", pdir)
                per_step[n].append((t_long - t_short) / (args.long - args.short))
                if pdir is not None:
                    prof.append(_profile(pdir))
                print(f"round {r + 1}: {n} rank(s) {per_step[n][-1] * 1e3:.0f} ms/step",
                      file=sys.stderr)  # fmt: skip

    chars = args.batch_size * args.seq_len
    base = statistics.median(per_step[1])
    print(
        f"\n{args.layers}x{args.hidden} LSTM, global batch {args.batch_size} x seq-len "
        f"{args.seq_len}, one BLAS thread per rank, medians of {args.rounds} rounds\n"
    )
    print("| ranks | steps/s | chars/s | speed-up | allreduce share of a step |")
    print("| --- | --- | --- | --- | --- |")
    for n, ts in per_step.items():
        t = statistics.median(ts)
        share = "—"
        if n > 1:
            step = statistics.median(p[0] for p in prof)
            wait = statistics.median(p[1] for p in prof)
            red = statistics.median(p[2] for p in prof)
            share = (f"{red * 1e3:.1f} ms = {100 * red / step:.1f}% "
                     f"(waiting for the slowest rank: {100 * wait / step:.1f}%)")  # fmt: skip
        print(f"| {n} | {1 / t:.2f} | {chars / t:,.0f} | ×{base / t:.2f} | {share} |")
    if prof:
        floats = prof[0][3]
        red = statistics.median(p[2] for p in prof)
        mb = floats * 4 / 1e6
        print(
            f"\nallreduce: {floats:,} floats ({mb:.1f} MB in float32) in {red * 1e3:.1f} ms"
            f" = {mb / 1e3 / red:.2f} GB/s over shared memory"
        )
        print("cost model (README): step(N) = compute(B/N) + 2(N-1)/N * bytes / bandwidth")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
