"""The CuPy backend: the same driver on a CUDA GPU (``nprnn.set_backend("cupy")``).

Arrays live on the device from input to gradients: ``empty`` is ``cupy.empty`` (CuPy's
own memory pool reuses buffers, so the host pool is not needed), ``matmul`` is cuBLAS,
and the element-wise steps are :mod:`nprnn.kernels.fast`'s written against ``xp`` =
``cupy`` — each NumPy call there is one CuPy kernel launch. For the LSTM and the GRU the
per-step work is fused into one CUDA kernel per step and direction (``fused=True``, the
default): the forward's gate activations, cell and hidden state, and the backward's
gate gradients and cell-gradient carry, each one ``cupy.ElementwiseKernel``. GPUs
compute on subnormal numbers at full speed, so nothing is flushed.

``CupyBackend(xp=numpy, fused=False)`` runs the backend's Python side on the host,
which is how the CPU test suite checks it where no GPU is present.
"""

from __future__ import annotations

from ..kernels import fast

__all__ = ["CupyBackend"]


class CupyBackend:
    name = "cupy"
    device = "cuda"
    gather_per_step = False  # one kernel launch for all steps' embedded input

    def __init__(self, xp=None, *, fused: bool = True):
        if xp is None:
            import cupy as xp  # noqa: PLC0415 - optional: imported only when chosen

            try:
                n = xp.cuda.runtime.getDeviceCount()
            except Exception as e:  # no driver, no device: CUDARuntimeError
                raise RuntimeError(
                    f"the 'cupy' backend found no usable CUDA device ({e}): run on a "
                    "machine with an NVIDIA GPU, or use the 'numpy' backend"
                ) from None
            if n == 0:
                raise RuntimeError(
                    "the 'cupy' backend found no CUDA device: use the 'numpy' backend"
                )
        self.xp = xp
        self.fused = bool(fused) and xp.__name__ == "cupy"
        self._kernels = {}

    def kernel(self, cell):
        if cell.kernel is None:
            return None
        if not self.fused:
            return cell.kernel
        if cell.name not in self._kernels:
            self._kernels[cell.name] = _fused(cell.name, self.xp) or cell.kernel
        return self._kernels[cell.name]

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype=dtype)

    def matmul(self, a, b, out):
        return self.xp.matmul(a, b, out=out)

    def uniform(self, rng, shape, dtype):
        """U[0, 1) samples drawn on the device, from a generator seeded by the host ``rng``
        (one draw of it per call: runs stay reproducible from the host seed)."""
        seed = int(rng.integers(2**63))
        return self.xp.random.default_rng(seed).random(shape, dtype=dtype)

    def asarray(self, a, dtype=None):
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a):
        asnumpy = getattr(self.xp, "asnumpy", None)
        return asnumpy(a) if asnumpy is not None else self.xp.asarray(a)

    def flush_subnormals(self, carried, chunk=()) -> bool:
        return False  # no subnormal slowdown on a GPU

    def info(self) -> dict:
        xp = self.xp
        out = {"backend": self.name, "cupy": getattr(xp, "__version__", "?")}
        try:
            dev = xp.cuda.Device()
            props = xp.cuda.runtime.getDeviceProperties(dev.id)
            out["device"] = (
                props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            )
            out["cuda"] = xp.cuda.runtime.runtimeGetVersion()
        except Exception:  # the host shim has no device
            out["device"] = "none"
        return out


# ----------------------------------------------------------------------------- fused steps

_LSTM_FORWARD = """
    o = tanh(o + xo) * (T)0.5 + (T)0.5;
    i = tanh(i + xi) * (T)0.5 + (T)0.5;
    f = tanh(f + xf) * (T)0.5 + (T)0.5;
    g = tanh(g + xg);
    c = f * cp + i * g;
    tc = tanh(c);
    h = o * tc;
"""
# e_o, e_i, e_f, e_g and dcdh are the driver's per-chunk factors (see fast._LSTM.factors)
_LSTM_BACKWARD = """
    T dc = dh * dcdh + dcn;
    d_o = e_o * dh;
    d_i = e_i * dc;
    d_f = e_f * dc;
    d_g = e_g * dc;
    dcp = dc * f;
"""
_GRU_FORWARD = """
    r = tanh(rec_r + x_r) * (T)0.5 + (T)0.5;
    z = tanh(rec_z + x_z) * (T)0.5 + (T)0.5;
    hn = rec_n + b_hn;
    n = tanh(x_n + r * hn);
    h = n + z * (hp - n);
"""


def _fused(name: str, cp):
    """A kernel object whose per-step work is one CUDA kernel, or None for ``name``."""
    if name == "lstm":
        return _FusedLSTM(cp)
    if name == "gru":
        return _FusedGRU(cp)
    return None


class _FusedLSTM(fast._LSTM):
    def __init__(self, cp):
        self._fwd = cp.ElementwiseKernel(
            "T xo, T xi, T xf, T xg, T cp", "T o, T i, T f, T g, T c, T tc, T h",
            _LSTM_FORWARD, "nprnn_lstm_forward",
        )  # fmt: skip
        self._bwd = cp.ElementwiseKernel(
            "T dh, T dcdh, T dcn, T e_o, T e_i, T e_f, T e_g, T f",
            "T d_o, T d_i, T d_f, T d_g, T dcp", _LSTM_BACKWARD, "nprnn_lstm_backward",
        )  # fmt: skip

    def forward_step(self, be, P, xp_t, rec, prev, new, st, t):
        H = rec.shape[0] // 4
        a = [rec[k * H : (k + 1) * H] for k in range(4)]  # o, i, f, g blocks
        x = [xp_t[k * H : (k + 1) * H] for k in range(4)]
        self._fwd(*x, prev[1], *a, new[1], st["tanh_c"][t], new[0])

    def backward_step(self, be, c, k, fac, t, dh, carried, carried_prev, d_ih, d_hh):
        e, dcdh, f, _ = fac
        d4 = d_hh.reshape(4, -1, d_hh.shape[1])
        self._bwd(dh, dcdh[k], carried[0], e[k, 0], e[k, 1], e[k, 2], e[k, 3], f[k],
                  d4[0], d4[1], d4[2], d4[3], carried_prev[0])  # fmt: skip
        return None


class _FusedGRU(fast._GRU):
    def __init__(self, cp):
        self._cp = cp
        self._fwd = cp.ElementwiseKernel(
            "T rec_r, T rec_z, T rec_n, T x_r, T x_z, T x_n, T b_hn, T hp",
            "T r, T z, T n, T hn, T h", _GRU_FORWARD, "nprnn_gru_forward",
        )  # fmt: skip

    def forward_step(self, be, P, xp_t, rec, prev, new, st, t):
        H = rec.shape[0] // 3
        a = st["gates"][t]
        b_hn = P.extra["b_hn"]
        if b_hn is None:
            b_hn = self._cp.zeros((H, 1), rec.dtype)
        self._fwd(rec[:H], rec[H : 2 * H], rec[2 * H :], xp_t[:H], xp_t[H : 2 * H],
                  xp_t[2 * H :], b_hn, prev[0], a[:H], a[H : 2 * H], a[2 * H :],
                  st["hn"][t], new[0])  # fmt: skip
