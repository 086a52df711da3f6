"""Pictures: hidden-unit activations of a char-LM as an HTML page; loss curves as a PNG.

``nprnn viz DIR --text "..." [--units 3,17] [--gate h] [--layer -1] [--out page.html]``
writes a self-contained HTML page (no script, no external file). For each chosen unit
of one layer there is a row with one ``<span class="ch">`` per character of the text,
its background the unit's value after the model has read that character, on a
diverging scale::

    v ∈ [−1, 1]:  −1 → blue #0000ff,  0 → white #ffffff,  +1 → red #ff0000

h, g (LSTM), n (GRU) and the RNN's h lie in [−1, 1] and are shown as they are; the
sigmoid gates i, f, o (LSTM), r, z (GRU) lie in [0, 1] and are shown as 2v − 1 (0 blue,
½ white, 1 red); the LSTM cell c is unbounded and is shown as tanh(c). Every span's
``title`` gives the exact value and the model's three most likely next characters, and
a last row shows the top prediction after each character (a space is drawn ␣, a newline
and the end-of-line token ⏎). Without ``--units`` the ``--top`` units whose value
varies most (standard deviation over the text) are shown.

The activations are recomputed from the run's weights by a plain step-by-step NumPy
loop (:func:`trace`) with PyTorch's cell equations, batch 1, float64; the tests check
that its h and logits agree with the model's own forward.

``nprnn plot DIR [--out FILE.png]`` draws the training and validation loss against the
step from the run's ``log.jsonl`` (and the validation accuracy of a classifier run on a
second axis). matplotlib is optional: without it the command fails with a one-line
message (``pip install 'nprnn[plot]'``).
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path

import numpy as np

__all__ = ["colour", "trace", "load_charlm", "render_html", "plot_log", "main_viz",
           "main_plot", "main", "import_pyplot", "make_parser"]  # fmt: skip

GATES = {"rnn": ("h",), "lstm": ("h", "c", "i", "f", "g", "o"), "gru": ("h", "r", "z", "n")}
SIGMOID_GATES = ("i", "f", "o", "r", "z")
_SHOW = {" ": "␣", "\n": "⏎", "\t": "⇥", "<eos>": "⏎"}  # how characters are drawn


# ----------------------------------------------------------------------------- plumbing


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one-line ``ValueError``s (the CLI prints them)."""

    def error(self, message):
        raise ValueError(f"{self.prog}: {message} — see '{self.prog} --help'")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):  # no "(default: None)" / "(default: False)" noise
        if action.default is None or action.default is False:  # not `in`: 0 == False
            return action.help
        return super()._get_help_string(action)


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser used by ``nprnn task|viz|plot|predict``: defaults shown, one-line errors."""
    return _Parser(prog=prog, description=description, allow_abbrev=False,
                   formatter_class=_Formatter)  # fmt: skip


def import_pyplot():
    """``matplotlib.pyplot`` (Agg backend), or a one-line ``ValueError`` saying how to get it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError(
            "matplotlib is not installed — install the plotting extra: pip install 'nprnn[plot]'"
        ) from None
    return plt


def colour(v: float) -> str:
    """``#rrggbb`` for v in [−1, 1] (clipped): −1 blue, 0 white, +1 red, linear between."""
    v = float(np.clip(v, -1.0, 1.0)) if np.isfinite(v) else 0.0
    fade = round(255 * (1 - abs(v)))  # the other two channels
    return f"#{fade:02x}{fade:02x}ff" if v < 0 else f"#ff{fade:02x}{fade:02x}"


# ----------------------------------------------------------------------------- the model


def load_charlm(run_dir, *, which: str = "best"):
    """``(model, vocab, config)`` of a char-LM run directory (``nprnn train --out DIR``)."""
    from .charlm import CharLM
    from .runs import CheckpointError, RunDir, load_model
    from .text import Vocab

    run = RunDir(Path(run_dir))
    if not run.is_run():
        raise CheckpointError(f"{run_dir} is not a run directory (no config.json) — pass the "
                              "--out directory of an nprnn train run")  # fmt: skip
    cfg, weights = load_model(run, best=which == "best")
    if not isinstance(cfg, dict) or cfg.get("format") != "nprnn-charlm":
        got = cfg.get("format") if isinstance(cfg, dict) else None
        raise CheckpointError(f"{run_dir} holds no character language model (format {got!r}) "
                              "— pass a directory written by nprnn train")  # fmt: skip
    try:
        vocab = Vocab.from_dict(cfg["vocab"])
        model = CharLM.from_config(cfg["model"])
        model.load_state_dict(weights)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"the run in {run_dir} does not fit its config ({e}) — it is "
                              "damaged or foreign; retrain it") from None  # fmt: skip
    return model.eval(), vocab, cfg


def _sigmoid(a):
    return 0.5 * np.tanh(0.5 * a) + 0.5


def trace(model, ids, *, layer: int = -1) -> dict:
    """Every step's state and gates of one layer, and the logits, for one sequence.

    ``model`` is a :class:`~nprnn.charlm.CharLM` (eval mode: no dropout); ``ids`` (T,)
    int. Returns ``{"h": (T, H), ["c", "i", "f", "g", "o" | "r", "z", "n"]: (T, H),
    "logits": (T, V)}`` for ``layer`` (negative counts from the last). Equations
    (PyTorch's): LSTM i, f, o = σ, g = tanh of W_ih x + b_ih + W_hh h + b_hh, c' = f c +
    i g, h' = o tanh(c'); GRU r, z = σ(·), n = tanh(W_in x + b_in + r (W_hn h + b_hn)),
    h' = (1 − z) n + z h; RNN h' = act(W_ih x + b_ih + W_hh h + b_hh).
    """
    rnn, kind, L = model.rnn, model.model, model.num_layers
    if not -L <= layer < L:
        raise ValueError(f"--layer must lie in [{-L}, {L}), got {layer} ({L} layer(s))")
    layer %= L
    ids = np.asarray(ids, dtype=np.int64)
    x = model.embedding.params["weight"].astype(np.float64)[ids]  # (T, E)
    T, H = len(ids), rnn.hidden_size
    for k in range(layer + 1):
        p = {n: rnn.params[f"{n}_l{k}"].astype(np.float64) for n in ("weight_ih", "weight_hh")}
        b_ih = rnn.params.get(f"bias_ih_l{k}", np.zeros(len(p["weight_ih"])))
        b_hh = rnn.params.get(f"bias_hh_l{k}", np.zeros(len(p["weight_hh"])))
        gi = x @ p["weight_ih"].T + b_ih  # (T, G·H)
        rec = {n: np.zeros((T, H)) for n in GATES[kind]}
        h, c = np.zeros(H), np.zeros(H)
        for t in range(T):
            gh = p["weight_hh"] @ h + b_hh  # (G·H,)
            if kind == "lstm":
                a = gi[t] + gh
                i, f, o = _sigmoid(a[:H]), _sigmoid(a[H : 2 * H]), _sigmoid(a[3 * H :])
                g = np.tanh(a[2 * H : 3 * H])
                c = f * c + i * g
                h = o * np.tanh(c)
                vals = {"h": h, "c": c, "i": i, "f": f, "g": g, "o": o}
            elif kind == "gru":
                r = _sigmoid(gi[t, :H] + gh[:H])
                z = _sigmoid(gi[t, H : 2 * H] + gh[H : 2 * H])
                n = np.tanh(gi[t, 2 * H :] + r * gh[2 * H :])
                h = (1 - z) * n + z * h
                vals = {"h": h, "r": r, "z": z, "n": n}
            else:
                a = gi[t] + gh
                h = np.tanh(a) if rnn.nonlinearity == "tanh" else np.maximum(a, 0)
                vals = {"h": h}
            for n, v in vals.items():
                rec[n][t] = v
        x = rec["h"]  # the next layer's input (no dropout in eval mode)
    if layer == L - 1:
        w = model.head.params
        rec["logits"] = rec["h"] @ w["weight"].T.astype(np.float64) + w["bias"]  # (T, V)
    else:  # the logits need the full stack: run the model itself
        logits, _ = model.logits(ids[:, None])
        rec["logits"] = logits[:, 0].astype(np.float64)
    return rec


# ----------------------------------------------------------------------------- the page


def _display(value: np.ndarray, gate: str) -> np.ndarray:
    """Values mapped onto the colour scale [−1, 1] (see the module docstring)."""
    if gate in SIGMOID_GATES:
        return 2 * value - 1
    return np.tanh(value) if gate == "c" else value


def _token(vocab, i: int) -> str:
    tok = vocab.tokens[i]
    return _SHOW.get(tok, tok)


def render_html(text: str, values: np.ndarray, units, gate: str, top3: list, *,
                title: str = "") -> str:  # fmt: skip
    """The HTML page: one row per unit (one ``<span class="ch">`` per character of
    ``text``, coloured by ``values[t, unit]``), then a row of top predictions.

    ``values`` (T, H) with T = len(text); ``top3[t]`` = [(token, prob)] × 3 after char t.
    """
    esc = html.escape
    shown = _display(values, gate)
    rows = []
    for u in units:
        cells = []
        for t, ch in enumerate(text):
            nxt = ", ".join(f"{tok!r} {p:.2f}" for tok, p in top3[t])
            tip = f"{ch!r} t={t} {gate}[{u}]={values[t, u]:+.3f} | next: {nxt}"
            cells.append(f'<span class="ch" style="background:{colour(shown[t, u])}" '
                         f'title="{esc(tip)}">{esc(_SHOW.get(ch, ch))}</span>')  # fmt: skip
        rows.append(f'<div class="row"><span class="lab">{esc(gate)}[{u}]</span>'
                    f"{''.join(cells)}</div>")  # fmt: skip
    preds = "".join(
        f'<span class="ch pred" title="{esc(", ".join(f"{k!r} {p:.2f}" for k, p in top3[t]))}">'
        f"{esc(top3[t][0][0])}</span>"
        for t in range(len(text))
    )
    rows.append(f'<div class="row"><span class="lab">next?</span>{preds}</div>')
    scale = "2v−1 (0 blue, ½ white, 1 red)" if gate in SIGMOID_GATES else (
        "tanh(c)" if gate == "c" else "v (−1 blue, 0 white, +1 red)")  # fmt: skip
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title or "nprnn viz")}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
.row {{ font-family: monospace; font-size: 18px; white-space: pre; margin: 2px 0; }}
.lab {{ display: inline-block; width: 6em; color: #555; font-size: 13px; }}
.ch {{ display: inline-block; min-width: 0.75em; text-align: center; padding: 1px 0; }}
.pred {{ color: #777; font-size: 14px; }}
</style></head><body>
<h3>{esc(title)}</h3>
<p>Colour of each character: the value after reading it, shown as {esc(scale)}.
Hover a character for the exact value and the three most likely next characters;
the last row shows the most likely next character.</p>
{chr(10).join(rows)}
</body></html>
"""


def visualize(run_dir, text: str, *, units=None, gate: str = "h", layer: int = -1,
              top: int = 8, which: str = "best") -> str:  # fmt: skip
    """The HTML page for ``text`` read by the char-LM in ``run_dir`` (see the module doc)."""
    from .text import DataError

    model, vocab, _ = load_charlm(run_dir, which=which)
    if not text:
        raise DataError("--text is empty — pass some characters to show")
    if gate not in GATES[model.model]:
        raise ValueError(f"--gate {gate!r} does not exist in a {model.model.upper()} — choose "
                         f"one of {', '.join(GATES[model.model])}")  # fmt: skip
    ids = vocab.encode(text)
    if vocab.lines_mode:  # read as <bos> + text, as in training; drop the <bos> step
        ids = np.concatenate([[vocab.bos_id], ids])
    rec = trace(model, ids, layer=layer)
    skip = 1 if vocab.lines_mode else 0
    values, logits = rec[gate][skip:], rec["logits"][skip:]  # (len(text), H), (len(text), V)
    H = values.shape[1]
    if units is None:
        units = [int(u) for u in np.argsort(-values.std(axis=0), kind="stable")[: min(top, H)]]
    bad = [u for u in units if not 0 <= u < H]
    if bad or not units:
        raise ValueError(f"--units must be indices in [0, {H}) (hidden size {H}), got {units}")
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # (T, V)
    top3 = [[(_token(vocab, int(i)), float(p[i])) for i in np.argsort(-p, kind="stable")[:3]]
            for p in probs]  # fmt: skip
    title = (f"{Path(run_dir).name}: {model.model.upper()} layer {layer % model.num_layers}, "
             f"{gate} of units {', '.join(map(str, units))}")  # fmt: skip
    return render_html(text, values, units, gate, top3, title=title)


# ----------------------------------------------------------------------------- loss curves


def plot_log(records: list, path, *, title: str = "") -> None:
    """train_loss / val_loss (and val_accuracy, if logged) against step, as a PNG."""
    curves = {k: [(r["step"], r[k]) for r in records
                  if isinstance(r.get("step"), int) and isinstance(r.get(k), int | float)]
              for k in ("train_loss", "val_loss", "val_accuracy")}  # fmt: skip
    if not (curves["train_loss"] or curves["val_loss"]):
        raise ValueError("the log holds no evaluation with train_loss or val_loss — train "
                         "for at least --eval-every steps first")  # fmt: skip
    plt = import_pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        if curves[key]:
            ax.plot(*zip(*curves[key], strict=True), marker=".", label=f"{label} loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (cross-entropy, nats)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if curves["val_accuracy"]:
        ax2 = ax.twinx()
        ax2.plot(*zip(*curves["val_accuracy"], strict=True), color="tab:green", marker=".",
                 label="validation accuracy")  # fmt: skip
        ax2.set_ylabel("accuracy")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- command line


def _units(text: str) -> list[int]:
    try:
        return [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        msg = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def main_viz(argv=None) -> int:
    """``nprnn viz DIR --text ... [--units] [--gate] [--layer] [--top] [--out]``."""
    p = make_parser(
        "nprnn viz",
        "Show, character by character, hidden units (or gates) of "
        "a trained character language model as a self-contained HTML page.",
    )
    a = p.add_argument
    a("dir", metavar="DIR", help="run directory written by nprnn train")
    a("--text", required=True, help="the text to read")
    a("--units", type=_units, help="comma-separated unit indices (default: the most varying)")
    a(
        "--gate",
        default="h",
        choices=("h", "c", "i", "f", "g", "o", "r", "z", "n"),
        help="what to show: state h, LSTM cell c / gates i f g o, GRU gates r z n",
    )
    a("--layer", type=int, default=-1, help="which layer (negative: from the last)")
    a("--top", type=int, default=8, help="without --units: how many units to show")
    a("--checkpoint", choices=("best", "last"), default="best", help="which weights")
    a("--out", default="viz.html", help="HTML file to write")
    args = p.parse_args(argv)
    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    page = visualize(args.dir, args.text, units=args.units, gate=args.gate, layer=args.layer,
                     top=args.top, which=args.checkpoint)  # fmt: skip
    Path(args.out).write_text(page, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def main_plot(argv=None) -> int:
    """``nprnn plot DIR [--out FILE.png]``: the loss curves of a run's ``log.jsonl``."""
    from .runs import RunDir

    p = make_parser(
        "nprnn plot",
        "Plot the training and validation loss of a run against "
        "the step (from its log.jsonl) as a PNG.",
    )
    p.add_argument("dir", metavar="DIR", help="run directory (holds log.jsonl)")
    p.add_argument("--out", help="PNG to write (default: DIR/loss.png)")
    args = p.parse_args(argv)
    run = RunDir(Path(args.dir))
    if not run.log_path.is_file():
        raise ValueError(f"no log.jsonl in {args.dir} — pass the --out directory of a "
                         "training run")  # fmt: skip
    out = args.out or str(run.path / "loss.png")
    plot_log(run.read_log(), out, title=run.path.name)
    print(f"wrote {out}")
    return 0


main = main_viz
