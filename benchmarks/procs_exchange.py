"""What one step's exchange costs under ``nprnn train --procs N``, on this machine.

    python benchmarks/procs_exchange.py                 # 2 processes, the default run's size
    python benchmarks/procs_exchange.py --procs 2 --floats 1086020

Forks N processes that share a :class:`nprnn.app.local.Exchange`, as ``--procs``
does, and times in each (medians over repeats, rank 0's printed):

- ``barrier``: one barrier (every process rings the others and sleeps until rung);
- ``average``: one gradient average of ``--floats`` float32 numbers as the trainer
  does it (:meth:`DataParallel.average_gradients`: weighted into this process's slot,
  the barrier, the slots added in rank order, divided by the total weight).

The default size, 146,231 floats, is the default ``nprnn train`` model's gradient
(LSTM, hidden 128, the 55 characters of the bundled names). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from nprnn.app.local import LocalParallel


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--floats", type=int, default=146_231)
    ap.add_argument("--repeat", type=int, default=2000, help="barriers timed")
    args = ap.parse_args(argv)
    par = LocalParallel(args.procs)
    grads = {"g": np.random.default_rng(0).standard_normal(args.floats).astype(np.float32)}

    def timed(fn, n):
        fn()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times.append((time.perf_counter() - t0) / n)
        return float(np.median(times)) * 1e6

    def loop():
        barrier = timed(par._ex.barrier, args.repeat)
        average = timed(lambda: par.average_gradients(grads, 1.0, 10), max(args.repeat // 10, 1))
        return barrier, average

    barrier, average = par.run(loop)
    out = {"procs": args.procs, "floats": args.floats}
    print(json.dumps({**out, "barrier_us": round(barrier, 1), "average_us": round(average, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
