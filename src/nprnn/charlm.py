"""Character-level language model: Embedding → RNN | LSTM | GRU stack → Linear → softmax.

    e_t   = E[x_t]                                  embedding row gather, (T, B, D_e)
    h¹_t  = cell₁(e_t, h¹_{t−1})                    (T, B, H)
    hᵏ_t  = cellₖ(drop(hᵏ⁻¹_t), hᵏ_{t−1})           k = 2..L, inter-layer dropout
    z_t   = W · drop(hᴸ_t) + b                       logits, (T, B, V)
    loss  = mean over predicted steps of −log softmax(z_t)[y_t]

All dropout masks (the recurrent stack's inter-layer dropout and the one before the
head) come from one generator the model owns, ``model.rng``, which also initialised
the weights: saving its state makes training resumable bit for bit. Parameter names
are PyTorch's (``embedding.weight``, ``rnn.weight_ih_l0`` ..., ``head.weight``,
``head.bias``), so the weights load into
``nn.Embedding`` + ``nn.LSTM``/``nn.GRU``/``nn.RNN`` + ``nn.Linear`` unchanged.

States follow the layers' contract: (L, B, H) for RNN/GRU, a pair of them for LSTM.
A state passed in is used as the initial state and gets no gradient (truncated BPTT);
the returned state is a fresh copy, detached from the graph.
"""

from __future__ import annotations

import numpy as np

from .dense import Embedding, Linear
from .layers import GRU, LSTM, RNN
from .losses import softmax_cross_entropy
from .validation import (
    as_float_dtype,
    as_rng,
    index_array,
    one_of,
    positive_int,
    real_in_range,
)

__all__ = ["CharLM", "MODELS"]

MODELS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


class CharLM:
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
        self.vocab_size = positive_int("vocab_size", vocab_size, minimum=2)
        self.model = one_of("model", model, tuple(MODELS))
        self.hidden = positive_int("hidden", hidden)
        self.num_layers = positive_int("layers", layers)
        self.dropout = real_in_range("dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.embedding_dim = (
            self.hidden if embedding_dim is None else positive_int("embedding_dim", embedding_dim)
        )
        self.dtype = as_float_dtype(dtype)
        self.rng = as_rng(rng)
        self.training = True
        E, H, V = self.embedding_dim, self.hidden, self.vocab_size
        self.embedding = Embedding(V, E, dtype=self.dtype, rng=self.rng)
        inter = self.dropout if self.num_layers > 1 else 0.0  # between stacked layers only
        self.rnn = MODELS[self.model](
            E, H, self.num_layers, dropout=inter, dtype=self.dtype, rng=self.rng
        )
        self.head = Linear(H, V, dtype=self.dtype, rng=self.rng)
        self._drops: list = []

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

    @classmethod
    def from_config(cls, cfg: dict, *, rng=None) -> CharLM:
        """Build a model from ``config()``'s dict (weights freshly initialised)."""
        keys = ("vocab_size", "model", "hidden", "layers", "dropout", "embedding_dim", "dtype")
        missing = [k for k in keys if k not in cfg]
        if missing:
            raise ValueError(f"model config lacks {', '.join(missing)}")
        return cls(
            cfg["vocab_size"],
            model=cfg["model"],
            hidden=cfg["hidden"],
            layers=cfg["layers"],
            dropout=cfg["dropout"],
            embedding_dim=cfg["embedding_dim"],
            dtype=cfg["dtype"],
            rng=rng,
        )

    def train(self) -> CharLM:
        """Switch dropout on."""
        self.training = True
        return self

    def eval(self) -> CharLM:
        """Switch dropout off."""
        self.training = False
        return self

    # ------------------------------------------------------------------ parameters

    def _named(self, attr: str) -> dict:
        out = {f"embedding.{k}": v for k, v in getattr(self.embedding, attr).items()}
        out.update({f"rnn.{k}": v for k, v in getattr(self.rnn, attr).items()})
        out.update({f"head.{k}": v for k, v in getattr(self.head, attr).items()})
        return out

    def params(self) -> dict:
        """Flat ``{name: array}`` of the parameters (the live arrays, not copies)."""
        return self._named("params")

    def grads(self) -> dict:
        """Flat ``{name: array}`` of the accumulated gradients, same names as ``params()``."""
        return self._named("grads")

    def zero_grad(self) -> None:
        """Clear every accumulated gradient."""
        for m in (self.embedding, self.rnn, self.head):
            m.zero_grad()

    def state_dict(self) -> dict:
        """Copies of the parameters under their PyTorch-style names."""
        return {k: np.array(v, copy=True) for k, v in self.params().items()}

    def load_state_dict(self, d) -> None:
        """Load ``{name: array-like}`` in place; names and shapes must match (says which not)."""
        own = self.params()
        missing, extra = sorted(set(own) - set(d)), sorted(set(d) - set(own))
        if missing or extra:
            parts = (["missing " + ", ".join(missing)] if missing else []) + (
                ["unexpected " + ", ".join(extra)] if extra else []
            )
            raise ValueError("the weights do not fit this model: " + "; ".join(parts))
        for prefix, module in (
            ("embedding.", self.embedding),
            ("rnn.", self.rnn),
            ("head.", self.head),
        ):
            module.load_state_dict({n: d[prefix + n] for n in module.params})

    # ------------------------------------------------------------------ forward / backward

    def _drop(self, x: np.ndarray, train: bool):
        if not train or self.dropout == 0.0:
            return x, None
        keep = self.rng.random(x.shape, dtype=self.dtype) >= self.dropout
        scale = keep * self.dtype.type(1.0 / (1.0 - self.dropout))  # (T, B, H): 0 or 1/(1−p)
        return x * scale, scale

    def _forward(self, inputs, mask, state, train: bool):
        ids = index_array("inputs", inputs, high=self.vocab_size, ndim=2)
        T, B = ids.shape
        x = self.embedding(ids)  # (T, B, E)
        self.rnn.training = train  # inter-layer dropout, drawn from self.rng
        h, new_state = self.rnn(x, state, mask=mask)  # (T, B, H); state (L, B, H) [pair]
        h, drop = self._drop(h, train)
        logits = self.head(h)  # (T, B, V)
        if isinstance(new_state, tuple):  # detach: fresh copies
            return logits, tuple(s.copy() for s in new_state), drop
        return logits, new_state.copy(), drop

    def _backward(self, dlogits: np.ndarray, drop) -> None:
        dh = self.head.backward(dlogits)  # (T, B, H)
        if drop is not None:
            dh *= drop
        dx, _ = self.rnn.backward(dh, None)  # the final state feeds nothing here: dstate 0
        self.embedding.backward(dx)

    def loss_and_grad(self, inputs, targets, mask=None, state=None):
        """Forward and backward on one batch; gradients accumulate into ``grads()``.

        ``inputs``, ``targets``: int ids (T, B); ``mask`` (T, B) 1 where a target counts
        (and the step is real); ``state``: initial state (no gradient flows into it).
        Returns ``(loss, new_state)``: the mean cross-entropy over counted steps and the
        final state, detached.
        """
        logits, new_state, drop = self._forward(inputs, mask, state, self.training)
        if not np.isfinite(logits).all():  # diverged: report it, leave the grads alone
            return float("nan"), new_state
        loss, dlogits = softmax_cross_entropy(logits, targets, mask=mask)
        self._backward(dlogits, drop)
        return float(loss), new_state

    def logits(self, inputs, state=None, mask=None):
        """Evaluation-mode forward: ``(logits (T, B, V), new_state)``, no dropout, no grads."""
        logits, new_state, _ = self._forward(inputs, mask, state, False)
        return logits, new_state

    def score(self, inputs, targets, mask=None, state=None):
        """Mean cross-entropy (nats) over the predicted tokens, without dropout.

        Returns ``(mean_loss, n_predicted, new_state)``; ``mean_loss * n_predicted`` is
        the summed loss, for averaging over many batches.
        """
        logits, new_state, _ = self._forward(inputs, mask, state, False)
        total, _ = softmax_cross_entropy(logits, targets, mask=mask, reduction="sum")
        n = int(np.count_nonzero(mask)) if mask is not None else int(np.size(targets))
        return (float(total) / n if n else 0.0), n, new_state

    # ------------------------------------------------------------------ sampling

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
        """Generate text (without dropout) from the model's distribution.

        ``mode="lines"``: ``n`` lines, each started at <bos> (then ``prime``) and stopped
        at <eos> or after ``max_len`` characters; returns a list of ``n`` strings (each
        starting with ``prime``). ``mode="stream"``: feeds ``prime`` (when empty: a newline,
        or the first character if there is none) and returns ``prime`` + ``n`` generated
        characters as one string.
        ``temperature`` > 0 divides the logits; ``top_k`` keeps the k most likely.
        """
        n = positive_int("n", n)
        temperature = real_in_range("temperature", temperature, low=0.0, low_open=True)
        if top_k is not None:
            top_k = positive_int("top_k", top_k)
        max_len = positive_int("max_len", max_len)
        one_of("mode", mode, ("lines", "stream"))
        rng = as_rng(rng)
        banned = [
            i
            for i in (getattr(vocab, "pad_id", None), getattr(vocab, "bos_id", None))
            if i is not None and 0 <= i < self.vocab_size
        ]
        prime_ids = list(vocab.encode(prime)) if prime else []
        if mode == "lines":
            start, B, steps = [vocab.bos_id, *prime_ids], n, max(max_len - len(prime), 0)
        else:
            if prime_ids:
                start = prime_ids
            else:
                start = list(vocab.encode("\n")) if "\n" in vocab.chars else [0]
            B, steps = 1, n
        eos = getattr(vocab, "eos_id", None) if mode == "lines" else None
        ids = np.tile(np.asarray(start, dtype=np.int64)[:, None], (1, B))  # (T0, B)
        logits, state = self.logits(ids)
        out = np.zeros((B, steps), dtype=np.int64)
        done = np.zeros(B, dtype=bool)
        lengths = np.full(B, steps)
        for t in range(steps):
            nxt = _draw(logits[-1], temperature, top_k, banned, rng)  # (B,)
            out[:, t] = nxt
            if eos is not None:
                newly = (nxt == eos) & ~done
                lengths[newly] = t
                done |= newly
                if done.all():
                    break
            logits, state = self.logits(nxt[None, :], state)
        texts = [prime + vocab.decode(out[b, : lengths[b]]) for b in range(B)]
        return texts if mode == "lines" else texts[0]


def _draw(logits: np.ndarray, temperature: float, top_k, banned, rng) -> np.ndarray:
    """One id per row from softmax(logits / T), restricted to the top k, never ``banned``."""
    z = logits.astype(np.float64) / temperature  # (B, V)
    z[:, banned] = -np.inf
    if top_k is not None and top_k < z.shape[1]:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k][:, None]
        z = np.where(z >= kth, z, -np.inf)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    u = (1.0 - rng.random(z.shape[0]))[:, None] * cdf[:, -1:]  # in (0, total]
    return np.minimum((cdf < u).sum(axis=1), z.shape[1] - 1)  # first j with cdf_j >= u
