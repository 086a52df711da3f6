"""The per-step recurrent GEMM in MKL (plain and packed) against NumPy's BLAS, one thread.

A recurrent step multiplies the same W_hh (G·H, H) by a new (H, B) state every step.
NumPy's BLAS (OpenBLAS in the wheels) repacks W_hh on every call; MKL can pack it once
(``cblas_sgemm_pack``) and reuse it (``cblas_sgemm_compute``), as oneDNN's fused RNN
primitive in torch does. This prints, per shape (M, K, N) = (G·H, H, B), the median
time and GFLOP/s of ``np.dot``, MKL's ``cblas_sgemm`` and MKL's packed compute, and the
packed result's error against float64. MKL is not a dependency of nprnn: get its
library from the ``mkl`` wheel without installing it::

    pip download mkl --no-deps -d /tmp/mkl && cd /tmp/mkl && unzip -q mkl-*.whl
    python benchmarks/mkl_gemm.py --lib /tmp/mkl/mkl-*.data/data/lib/libmkl_rt.so.3

Measured 2026-12-08 in three calls (AMD EPYC, 2 cores, MKL 2026.2.1, OpenBLAS 0.3.31): at
H = 128..1024 MKL was at best level with OpenBLAS (within 3%) and up to 60% slower, its
packed compute no better (up to 68% slower); at B = 1, 1.1-5x slower.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

ROW_MAJOR, NO_TRANS, A_MATRIX, PACKED = 101, 111, 161, 151
SHAPES = [(512, 128, 16), (512, 128, 32), (1024, 256, 64), (2048, 512, 32),
          (4096, 1024, 16), (512, 128, 1)]  # fmt: skip


def median_us(fn, n: int) -> float:
    for _ in range(20):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", required=True, help="path to MKL's libmkl_rt.so")
    ap.add_argument("--repeat", type=int, default=400, help="timed calls per shape")
    args = ap.parse_args(argv)
    os.environ.setdefault("MKL_THREADING_LAYER", "SEQUENTIAL")
    mkl = ctypes.CDLL(args.lib, mode=ctypes.RTLD_GLOBAL)
    mkl.MKL_Set_Threading_Layer(ctypes.c_int(1))  # sequential: one thread, like np.dot below
    mkl.cblas_sgemm_pack_get_size.restype = ctypes.c_size_t
    i, f = ctypes.c_int, ctypes.c_float

    def ptr(a):
        return a.ctypes.data_as(ctypes.c_void_p)

    rng = np.random.default_rng(0)
    print("(M, K, N): numpy | mkl | mkl packed, microseconds (GFLOP/s); packed error")
    for M, K, N in SHAPES:
        A = rng.standard_normal((M, K)).astype(np.float32)
        B = rng.standard_normal((K, N)).astype(np.float32)
        C = np.empty((M, N), np.float32)
        size = mkl.cblas_sgemm_pack_get_size(i(A_MATRIX), i(M), i(N), i(K))
        packed = np.empty(size // 4 + 16, np.float32)
        mkl.cblas_sgemm_pack(i(ROW_MAJOR), i(A_MATRIX), i(NO_TRANS), i(M), i(N), i(K),
                             f(1.0), ptr(A), i(K), ptr(packed))  # fmt: skip

        compute = functools.partial(
            mkl.cblas_sgemm_compute, i(ROW_MAJOR), i(PACKED), i(NO_TRANS), i(M), i(N), i(K),
            ptr(packed), i(K), ptr(B), i(N), f(0.0), ptr(C), i(N),
        )  # fmt: skip
        plain = functools.partial(
            mkl.cblas_sgemm, i(ROW_MAJOR), i(NO_TRANS), i(NO_TRANS), i(M), i(N), i(K), f(1.0),
            ptr(A), i(K), ptr(B), i(N), f(0.0), ptr(C), i(N),
        )  # fmt: skip
        with threadpool_limits(1):
            t_np = median_us(functools.partial(np.dot, A, B, out=C), args.repeat)
        t_mkl = median_us(plain, args.repeat)
        t_packed = median_us(compute, args.repeat)  # last: C holds the packed result
        ref = A.astype(np.float64) @ B
        err = float(np.abs(C - ref).max() / np.abs(ref).max())
        flop = 2 * M * K * N / 1e3
        cells = " | ".join(f"{t:.1f} ({flop / t:.0f})" for t in (t_np, t_mkl, t_packed))
        print(f"({M}, {K}, {N}): {cells}; {err:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
