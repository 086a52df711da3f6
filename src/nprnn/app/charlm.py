"""Character-level language model: Embedding → RNN | LSTM | GRU stack → Linear → softmax.

    e_t   = E[x_t]                                  embedding row gather, (T, B, D_e)
    h¹_t  = cell₁(e_t, h¹_{t−1})                    (T, B, H)
    hᵏ_t  = cellₖ(drop(hᵏ⁻¹_t), hᵏ_{t−1})           k = 2..L, inter-layer dropout
    z_t   = W · drop(hᴸ_t) + b                       logits, (T, B, V)
    loss  = mean over predicted steps of −log softmax(z_t)[y_t]

:class:`CharLM` is an :class:`nprnn.module.Module` made of public parts (``nprnn.Embedding``,
``nprnn.LSTM``/``GRU``/``RNN``, ``nprnn.Linear``), so its parameter names are PyTorch's
(``embedding.weight``, ``rnn.weight_ih_l0`` ..., ``head.weight``, ``head.bias``) and the
weights load into ``nn.Embedding`` + ``nn.LSTM``/``nn.GRU``/``nn.RNN`` + ``nn.Linear``
unchanged. All dropout masks (the stack's inter-layer dropout and the one before the
head) come from one generator the model owns, ``model.rng``, which also initialised
the weights: saving its state makes training resumable bit for bit.

States follow the layers' contract: (L, B, H) for RNN/GRU, a pair of them for LSTM.
A state passed in is used as the initial state and gets no gradient (truncated BPTT);
the returned state is a fresh copy, detached from the graph.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np

import nprnn
from nprnn import backends
from nprnn.grad_mode import no_grad
from nprnn.module import Module
from nprnn.validation import (
    all_finite,
    as_float_dtype,
    as_rng,
    check_finite,
    format_shape,
    index_array,
    one_of,
    positive_int,
    real_in_range,
)

from .models import MODELS, embedded_backward, embedded_forward
from .models import param_shapes as _stack_shapes

__all__ = ["CharLM"]
_CONFIG_KEYS = ("vocab_size", "model", "hidden", "layers", "dropout", "embedding_dim", "dtype")


class CharLM(Module):
    """Embedding → recurrent stack → Linear head, with exact gradients.

    ``CharLM(vocab_size, *, model="lstm", hidden=128, layers=1, dropout=0.0,
    embedding_dim=None, dtype=np.float32, rng=None)``. ``embedding_dim=None`` uses
    ``hidden``. ``dropout`` is applied between recurrent layers and before the head,
    only in training mode (``train()``, the default; ``eval()`` switches it off).
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        model: str = "lstm",
        hidden: int = 128,
        layers: int = 1,
        dropout: float = 0.0,
        embedding_dim: int | None = None,
        dtype=np.float32,
        rng=None,
    ):
        super().__init__(as_float_dtype(dtype))
        self.vocab_size = positive_int("vocab_size", vocab_size, minimum=2)
        self.model = one_of("model", model, tuple(MODELS))
        self.hidden = positive_int("hidden", hidden)
        self.num_layers = positive_int("layers", layers)
        self.dropout = real_in_range("dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.embedding_dim = (
            self.hidden if embedding_dim is None else positive_int("embedding_dim", embedding_dim)
        )
        self.rng = as_rng(rng)
        E, H, V, dt = self.embedding_dim, self.hidden, self.vocab_size, self.dtype
        self.embedding = nprnn.Embedding(V, E, dtype=dt, rng=self.rng)
        inter = self.dropout if self.num_layers > 1 else 0.0  # between stacked layers only
        self.rnn = MODELS[self.model](E, H, self.num_layers, dropout=inter, dtype=dt, rng=self.rng)
        self.head = nprnn.Linear(H, V, dtype=dt, rng=self.rng)

    def _extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, model={self.model!r}"

    # ------------------------------------------------------------------ configuration

    def config(self) -> dict:
        """The architecture as a JSON-able dict; ``CharLM.from_config`` rebuilds it."""
        return {
            "vocab_size": self.vocab_size,
            "model": self.model,
            "hidden": self.hidden,
            "layers": self.num_layers,
            "dropout": self.dropout,
            "embedding_dim": self.embedding_dim,
            "dtype": self.dtype.name,
        }

    @staticmethod
    def _checked_config(cfg) -> dict:
        """``cfg``'s architecture, every value checked as the constructor checks it."""
        if not isinstance(cfg, Mapping):
            raise TypeError(f"model config must be a dict, got {type(cfg).__name__}")
        missing = [k for k in _CONFIG_KEYS if k not in cfg]
        if missing:
            raise ValueError(f"model config lacks {', '.join(missing)}")
        hidden = positive_int("hidden", cfg["hidden"])
        emb = cfg["embedding_dim"]
        return {
            "vocab_size": positive_int("vocab_size", cfg["vocab_size"], minimum=2),
            "model": one_of("model", cfg["model"], tuple(MODELS)),
            "hidden": hidden,
            "layers": positive_int("layers", cfg["layers"]),
            "dropout": real_in_range("dropout", cfg["dropout"], low=0.0, high=1.0, high_open=True),
            "embedding_dim": hidden if emb is None else positive_int("embedding_dim", emb),
            "dtype": as_float_dtype(cfg["dtype"]),
        }

    @classmethod
    def param_shapes(cls, cfg) -> dict:
        """``{name: shape}`` of the parameters of the model ``cfg`` describes, in
        ``params``' order, without building it."""
        c = cls._checked_config(cfg)
        return _param_shapes(c, c["layers"])

    @classmethod
    def check_weights(cls, cfg, weights) -> None:
        """Raise ``ValueError`` unless ``weights`` ({name: array}) has exactly the names
        and shapes of the model ``cfg`` describes.

        Nothing is built or allocated: a config that asks for an enormous model is
        refused by comparing it with the weights, at a cost bounded by their number.
        """
        c = cls._checked_config(cfg)
        if not isinstance(weights, Mapping):
            raise TypeError(f"weights must be a dict name -> array, got {type(weights).__name__}")
        n_rnn = sum(1 for k in weights if isinstance(k, str) and k.startswith("rnn."))
        if 4 * c["layers"] > n_rnn + 4:  # too many layers to list: say so without listing
            raise ValueError(
                f"the weights do not fit this model: the config asks for {c['layers']} "
                f"recurrent layers but the weights hold {n_rnn} recurrent arrays "
                "(4 per layer)"
            )
        shapes = _param_shapes(c, c["layers"])
        missing = [k for k in shapes if k not in weights]
        extra = sorted(str(k) for k in weights if k not in shapes)
        problems = (["missing " + ", ".join(missing)] if missing else []) + (
            ["unexpected " + ", ".join(extra)] if extra else []
        )
        for name, want in shapes.items():
            if name in weights:
                got = tuple(np.shape(weights[name]))
                if got != want:
                    got, want = format_shape(got), format_shape(want)
                    problems.append(f"{name} has shape {got}, expected {want}")
        if problems:
            raise ValueError("the weights do not fit this model: " + "; ".join(problems))

    @classmethod
    def from_config(cls, cfg: dict, *, rng=None, weights=None) -> CharLM:
        """Build a model from ``config()``'s dict (weights freshly initialised).

        ``weights``: ``{name: array}`` to load; they are compared with ``cfg`` first
        (:meth:`check_weights`), so a config that does not fit them is refused before
        anything is allocated.
        """
        c = cls._checked_config(cfg)
        if weights is not None:
            cls.check_weights(c, weights)
        model = cls(
            c["vocab_size"],
            model=c["model"],
            hidden=c["hidden"],
            layers=c["layers"],
            dropout=c["dropout"],
            embedding_dim=c["embedding_dim"],
            dtype=c["dtype"],
            rng=rng,
        )
        if weights is not None:
            model.load_state_dict(weights)
        return model

    # ------------------------------------------------------------------ forward / backward

    def _drop(self, x: np.ndarray, train: bool):
        if not train or self.dropout == 0.0:
            return x, None
        # drawn where the kernels compute (the host rng's own draws on NumPy)
        keep = backends.current().uniform(self.rng, x.shape, self.dtype) >= self.dropout
        scale = keep * self.dtype.type(1.0 / (1.0 - self.dropout))  # (T, B, H): 0 or 1/(1−p)
        return x * scale, scale

    def forward(self, inputs, state=None, mask=None):
        """``(logits (T, B, V), new_state)`` of int ids (T, B); dropout in training mode.

        Outside :func:`nprnn.no_grad` what :meth:`backward` needs is kept.
        """
        ids = index_array("inputs", inputs, high=self.vocab_size, ndim=2)
        # (T, B, H); state (L, B, H) [pair]
        h, new_state, embedded = embedded_forward(self.embedding, self.rnn, ids, state, mask)
        h, drop = self._drop(h, self.training)
        logits = self.head._forward(h)  # (T, B, V); h is the stack's own output
        self._save_for_backward((drop, embedded))
        if isinstance(new_state, tuple):  # detach: fresh copies
            return logits, tuple(s.copy() for s in new_state)
        return logits, new_state.copy()

    def backward(self, dlogits: np.ndarray) -> None:
        """Gradients of the latest pending forward from dL/dlogits (T, B, V), accumulated
        into ``grads`` (the final state feeds nothing: its gradient is 0)."""
        self._backward(dlogits, checked=False)

    def _backward(self, dlogits, *, checked: bool) -> None:
        """:meth:`backward`; ``checked``: dlogits is the loss's own gradient (finite, of
        the logits' shape), so the head skips its checks."""
        drop, embedded = self._saved_for_backward()
        dh = self.head._backward(dlogits) if checked else self.head.backward(dlogits)
        if drop is not None:
            dh *= drop
        dx, _ = self.rnn.backward(dh, None)
        embedded_backward(self.embedding, dx, embedded)

    def loss_and_grad(self, inputs, targets, mask=None, state=None):
        """Forward and backward on one batch; gradients accumulate into ``grads``.

        ``inputs``, ``targets``: int ids (T, B); ``mask`` (T, B) 1 where a target counts
        (and the step is real); ``state``: initial state (no gradient flows into it).
        Returns ``(loss, new_state)``: the mean cross-entropy over counted steps and the
        final state, detached.
        """
        logits, new_state = self.forward(inputs, state, mask)
        if not all_finite(logits):  # diverged: report it, leave the grads alone
            self.zero_grad()  # drops the pending forward too
            return float("nan"), new_state
        loss, dlogits = nprnn.softmax_cross_entropy(logits, targets, mask=mask)
        self._backward(dlogits, checked=True)
        return float(loss), new_state

    def logits(self, inputs, state=None, mask=None):
        """Evaluation-mode forward: ``(logits (T, B, V), new_state)``, no dropout, no grads
        (whatever mode the model is in)."""
        was = self.training
        self.eval()
        try:
            with no_grad():
                return self.forward(inputs, state, mask)
        finally:
            self.train(was)

    def score(self, inputs, targets, mask=None, state=None):
        """Mean cross-entropy (nats) over the predicted tokens, without dropout.

        Returns ``(mean_loss, n_predicted, new_state)``; ``mean_loss * n_predicted`` is
        the summed loss, for averaging over many batches.
        """
        logits, new_state = self.logits(inputs, state, mask)
        total, _ = nprnn.softmax_cross_entropy(logits, targets, mask=mask, reduction="sum")
        n = int(np.count_nonzero(mask)) if mask is not None else int(np.size(targets))
        return (float(total) / n if n else 0.0), n, new_state

    # ------------------------------------------------------------------ generation

    def _check_sampling(self, vocab, temperature, top_k, mode):
        temperature = real_in_range("temperature", temperature, low=0.0)
        if top_k is not None:
            top_k = positive_int("top_k", top_k)
        one_of("mode", mode, ("lines", "stream"))
        banned = [
            i
            for i in (getattr(vocab, "pad_id", None), getattr(vocab, "bos_id", None))
            if i is not None and 0 <= i < self.vocab_size
        ]
        return temperature, top_k, banned

    def _steps(self, start: np.ndarray, steps: int, draw) -> Iterator[np.ndarray]:
        """Feed ``start`` (T0, B), then yield ``steps`` drawn ids (B,), each fed back.

        ``start`` runs through the sequence path; then the stack's
        :meth:`~nprnn.layers.LSTM.stepper` (prepared weights, state kept inside) takes
        one step per character: the first layer's input projection of every token is
        one table, W_ih E + b_ih (V, G·H) in the stepper's basis
        (:meth:`~nprnn.layers.Stepper.table`), so a step gathers a row of it instead of
        multiplying, and the head is one small GEMM."""
        logits, state = self.logits(start)
        gen = self.rnn.stepper(state)
        table = gen.table(self.rnn.project(self.embedding.params["weight"]))  # (V, G·H)
        check_finite("the projected embedding table", table)  # once: its rows go unchecked
        w_t = self.head.params["weight"].T.copy()  # (H, V)
        b = self.head.params["bias"]
        z = logits[-1]  # (B, V)
        for t in range(steps):
            nxt = draw(z)  # (B,)
            yield nxt
            if t + 1 < steps:
                z = gen.step_trusted(table[nxt]) @ w_t + b

    def generate(
        self,
        vocab,
        *,
        n: int = 10,
        temperature: float = 1.0,
        top_k: int | None = None,
        prime: str = "",
        rng=None,
        max_len: int = 100,
        mode: str = "lines",
        chunk: int = 64,
    ) -> Iterator[str]:
        """Generate text piece by piece (without dropout), for printing as it comes.

        ``mode="lines"``: yields ``n`` lines, each started at <bos> (then ``prime``) and
        stopped at <eos> or after ``max_len`` characters (each starts with ``prime``);
        they are generated ``chunk`` at a time. ``mode="stream"``: yields ``prime`` (when
        empty, a newline is fed, or the first character if there is none), then ``n``
        generated characters in pieces of at most ``chunk``. ``temperature`` divides the
        logits (0: greedy, always the most likely); ``top_k`` keeps the k most likely.
        """
        n, chunk = positive_int("n", n), positive_int("chunk", chunk)
        max_len = positive_int("max_len", max_len)
        temperature, top_k, banned = self._check_sampling(vocab, temperature, top_k, mode)
        rng = as_rng(rng)
        prime_ids = list(vocab.encode(prime)) if prime else []

        # NumPy's underflow setting, read again after every yield (the caller's code runs
        # only then) rather than once a character
        under_ignored = _under_ignored()

        def draw(z):
            return _draw(z, temperature, top_k, banned, rng, under_ignored)

        if mode == "stream":
            start = prime_ids or (list(vocab.encode("\n")) if "\n" in vocab.chars else [0])
            if prime:
                yield prime
                under_ignored = _under_ignored()
            piece = []
            for nxt in self._steps(np.array(start, dtype=np.int64)[:, None], n, draw):
                piece.append(int(nxt[0]))
                if len(piece) == chunk or vocab.tokens[piece[-1]] == "\n":
                    yield vocab.decode(np.array(piece))
                    under_ignored = _under_ignored()
                    piece = []
            if piece:
                yield vocab.decode(np.array(piece))
            return
        steps = max(max_len - len(prime), 0)
        for first in range(0, n, chunk):
            under_ignored = _under_ignored()
            B = min(chunk, n - first)
            start = np.tile(
                np.asarray([vocab.bos_id, *prime_ids], dtype=np.int64)[:, None], (1, B)
            )  # (T0, B)
            out = np.zeros((B, steps), dtype=np.int64)
            lengths = np.full(B, steps)
            done = np.zeros(B, dtype=bool)
            for t, nxt in enumerate(self._steps(start, steps, draw)):
                out[:, t] = nxt
                newly = (nxt == vocab.eos_id) & ~done
                lengths[newly] = t
                done |= newly
                if done.all():
                    break
            yield from (prime + vocab.decode(out[b, : lengths[b]]) for b in range(B))

    def sample(
        self,
        vocab,
        *,
        n: int = 10,
        temperature: float = 1.0,
        top_k: int | None = None,
        prime: str = "",
        rng=None,
        max_len: int = 100,
        mode: str = "lines",
    ):
        """All of :meth:`generate` at once: a list of ``n`` lines (lines mode), or one
        string of ``prime`` + ``n`` characters (stream mode)."""
        pieces = self.generate(
            vocab,
            n=n,
            temperature=temperature,
            top_k=top_k,
            prime=prime,
            rng=rng,
            max_len=max_len,
            mode=mode,
        )
        return list(pieces) if mode == "lines" else "".join(pieces)


def _param_shapes(c: dict, layers: int) -> dict:
    """Parameter shapes of a checked config ``c`` (see ``CharLM._checked_config``)."""
    V, E, H = c["vocab_size"], c["embedding_dim"], c["hidden"]
    return {
        "embedding.weight": (V, E),
        **_stack_shapes(c["model"], E, H, layers),
        "head.weight": (V, H),
        "head.bias": (V,),
    }


def _under_ignored() -> bool:
    """Whether NumPy's error settings ignore underflow (its default): the one-row draw
    needs no ``errstate`` then."""
    return np.geterr()["under"] == "ignore"


def _draw(
    logits: np.ndarray, temperature: float, top_k, banned, rng, under_ignored=None
) -> np.ndarray:
    """One id per row from softmax(logits / T), restricted to the top k, never ``banned``.

    T = 0 means greedy: the most likely id (ties drawn uniformly). A temperature so
    small that logits / T overflows is that limit too, computed as (z - max z) / T,
    which is 0 at the maximum and -inf (or very negative) elsewhere.
    ``under_ignored``: whether ``np.geterr()`` ignores underflow (None: read it here).
    """
    if logits.shape[0] == 1 and logits.dtype.itemsize <= 4 and temperature >= 1e-30:
        if under_ignored is None:
            under_ignored = _under_ignored()
        j = _draw_one(logits[0], temperature, top_k, banned, rng, under_ignored)
        if j is not None:
            return j
    z = logits.astype(np.float64)  # (B, V)
    z[:, banned] = -np.inf
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        if temperature == 0:
            zt = np.where(z == z.max(axis=1, keepdims=True), 0.0, -np.inf)
        else:
            zt = z / temperature
            if not np.isfinite(zt.max(axis=1)).all():  # overflow: T is tiny
                zt = (z - z.max(axis=1, keepdims=True)) / temperature
        if top_k is not None and top_k < zt.shape[1]:
            kth = np.partition(zt, -top_k, axis=1)[:, -top_k][:, None]
            zt = np.where(zt >= kth, zt, -np.inf)
        p = np.exp(zt - zt.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    u = (1.0 - rng.random(zt.shape[0]))[:, None] * cdf[:, -1:]  # in (0, total]
    return np.minimum((cdf < u).sum(axis=1), zt.shape[1] - 1)  # first j with cdf_j >= u


def _draw_one(logits, temperature, top_k, banned, rng, under_ignored):
    """:func:`_draw` for one row, the same arithmetic on a 1-D array (generation at B = 1
    draws once per character; this path is about 3× faster), or None where
    the general path is needed (top k, a non-finite maximum, underflow not ignored).
    float32 logits over T ≥ 1e-30 stay below 1e69, so z / T cannot overflow, and
    underflow (z / T or the exp of very negative logits) is what NumPy ignores by
    default: no ``errstate`` is needed. The ufuncs' own ``reduce``/``accumulate`` are
    what ``max``/``cumsum`` call, without their Python wrappers (3 µs a character)."""
    if (top_k is not None and top_k < logits.shape[0]) or not under_ignored:
        return None
    z = logits.astype(np.float64)  # (V,)
    if banned:
        z[banned] = -np.inf
    z /= temperature
    top = float(np.maximum.reduce(z))
    if not math.isfinite(top):
        return None
    z -= top
    cdf = np.add.accumulate(np.exp(z, out=z), out=z)
    u = (1.0 - rng.random()) * cdf[-1]  # in (0, total], the same draw as rng.random(1)
    return np.array([min(int(cdf.searchsorted(u)), z.shape[0] - 1)])  # first cdf_j >= u
