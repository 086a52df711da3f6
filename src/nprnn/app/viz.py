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

The activations are recomputed from the run's weights by the cell's reference steps
(:func:`trace`), batch 1, float64; the tests check that its h and logits agree with the
model's own forward. What can be shown, and which gates lie in [0, 1], comes from the
cell's description (:mod:`nprnn.kernels.cells`).

The page has a colour legend (the scale from −1 to +1 and what the values mean for the
chosen gate), and each character is drawn in white on dark backgrounds and in black on
light ones (whichever contrasts more, by WCAG relative luminance).

``nprnn plot DIR [--out FILE.png]`` draws the training and validation loss against the
step from the run's ``log.jsonl`` (and the validation accuracy of a classifier run on a
second axis). matplotlib is optional: without it ``nprnn plot`` fails with a one-line
message (``pip install 'nprnn[plot]'``), and training just writes no ``loss.png``.
"""

from __future__ import annotations

import contextlib
import html
import importlib.util
import math
from pathlib import Path

import numpy as np

from .errors import DataError, UsageError

__all__ = [
    "colour",
    "text_colour",
    "trace",
    "load_charlm",
    "visualize",
    "render_html",
    "scale_of",
    "shown",
    "plot_log",
    "new_figure",
    "PlotProcess",
    "loss_plotter",
    "draw_loss_plot",
    "cmd_viz",
    "cmd_plot",
]

_SHOW = {" ": "␣", "\n": "⏎", "\t": "⇥", "<eos>": "⏎"}  # how characters are drawn
_PLOT_FIX = "install the plotting extra: pip install 'nprnn[plot]'"


# ----------------------------------------------------------------------------- plumbing


def new_figure(**kw):
    """A ``matplotlib.figure.Figure`` (no pyplot: no global backend, no GUI), or a
    one-line :class:`UsageError` saying how to get matplotlib."""
    try:
        import matplotlib  # noqa: F401  (first: a stub or a broken install fails here)
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("matplotlib is not installed", _PLOT_FIX) from None
    return Figure(**kw)


# run by the plotting child: import matplotlib at once (while the parent trains) and draw
# a throw-away plot into memory (the first drawing loads fonts: 0.126 against 0.083 s),
# then draw the one plot the parent asks for on stdin, answering plot_log's result on
# stdout, and leave without the interpreter's teardown (0.08 s the parent would wait).
# At the lowest priority: with --procs N the training processes take every core, and a
# child competing with one of them would hold back all of them at the next step's
# exchange; niced, it works in their idle moments, and at full speed once they end.
_CHILD = """
import io, json, os, sys
try:
    os.nice(19)
except (AttributeError, OSError):
    pass
sys.path.insert(0, sys.argv[1])
from nprnn.app.viz import plot_log
try:  # without matplotlib this draws nothing (False), and so will the request
    plot_log([{"step": 0, "train_loss": 1.0}], io.BytesIO())
except Exception:
    pass
line = sys.stdin.readline()
if line:
    r = json.loads(line)
    print(json.dumps(plot_log(r["records"], r["path"], title=r["title"])), flush=True)
    os._exit(0)
"""


class PlotProcess:
    """The loss plot drawn by a child process that imports matplotlib while training runs.

    matplotlib's import (~0.45 s) is a third of a short run's fixed cost. In a thread it
    would take the GIL the training loop needs (measured: no gain); a child process runs
    it on another core. :meth:`plot` takes the records when training is over and
    :meth:`result` sends them and waits for the drawing. ``None`` from :meth:`result`
    means the child could not draw (it died, or took longer than ``timeout``): the
    caller then draws in-process, so the outcome and any error are those of
    :func:`plot_log` itself. The child reads its request from a pipe: if this process
    dies first, it reads end of file and exits, leaving nothing behind.
    """

    def __init__(self):
        import subprocess  # noqa: PLC0415
        import sys  # noqa: PLC0415

        root = str(Path(__file__).resolve().parents[2])  # the directory holding nprnn/
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
        )
        self._request = None

    @classmethod
    def start(cls):
        """A child, or None where matplotlib is absent or no process can be started."""
        try:
            if importlib.util.find_spec("matplotlib") is None:
                return None
            return cls()
        except (ImportError, ValueError, OSError):  # no spec (a blocked import); no fork
            return None

    def plot(self, records: list, path, *, title: str = "") -> None:
        """The request ``plot_log(records, path, title=title)``, sent by :meth:`result`."""
        import json  # noqa: PLC0415

        try:
            self._request = json.dumps({"records": records, "path": str(path), "title": title})
        except (TypeError, ValueError):  # not JSON: result() says None, the caller draws
            self._request = None

    def result(self, timeout: float = 60.0):
        """plot_log's True/False from the child, or None (the caller draws instead)."""
        import json  # noqa: PLC0415
        import subprocess  # noqa: PLC0415

        if self._request is None:
            self.close()
            return None
        try:
            out, _ = self._proc.communicate(self._request + "\n", timeout=timeout)
        except (subprocess.TimeoutExpired, OSError):  # slow, or gone (a broken pipe)
            self.close()
            return None
        if self._proc.returncode != 0:
            return None
        try:
            answer = json.loads(out)
        except ValueError:
            return None
        return answer if isinstance(answer, bool) else None

    def close(self) -> None:
        """Stop the child if it still runs (an interrupted or failed run)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for f in (self._proc.stdin, self._proc.stdout):
            try:
                f.close()
            except OSError:
                pass


PLOT_CHILD_STEPS = 200
"""Training runs of at least this many steps draw their loss plot in a
:class:`PlotProcess`; shorter ones (which could not hide its import) draw it in-process."""


@contextlib.contextmanager
def loss_plotter(steps: int):
    """``with loss_plotter(opts.steps) as plotter:`` a :class:`PlotProcess` started now for
    a run of ``steps`` steps, or None (a short run, an MPI rank: no child processes of a
    rank, or no matplotlib); stopped on leaving, however the run ends."""
    from nprnn import distributed  # noqa: PLC0415

    use = steps >= PLOT_CHILD_STEPS and not distributed.launched()
    plotter = PlotProcess.start() if use else None
    try:
        yield plotter
    finally:
        if plotter is not None:
            plotter.close()


def draw_loss_plot(records: list, path, *, title: str, plotter=None) -> None:
    """:func:`plot_log` of ``records`` into ``path``, by ``plotter`` (from
    :func:`loss_plotter`) when it can draw, else in this process."""
    if plotter is not None:
        plotter.plot(records, path, title=title)
        if plotter.result() is not None:
            return
    plot_log(records, path, title=title)


def colour(v: float) -> str:
    """``#rrggbb`` for v in [−1, 1] (clipped): −1 blue, 0 white, +1 red, linear between."""
    v = float(np.clip(v, -1.0, 1.0)) if np.isfinite(v) else 0.0
    fade = round(255 * (1 - abs(v)))  # the other two channels
    return f"#{fade:02x}{fade:02x}ff" if v < 0 else f"#ff{fade:02x}{fade:02x}"


def _luminance(hex_colour: str) -> float:
    def lin(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def text_colour(background: str) -> str:
    """``#000000`` or ``#ffffff``, whichever contrasts more with ``background`` (WCAG)."""
    L = _luminance(background)
    return "#000000" if (L + 0.05) / 0.05 >= 1.05 / (L + 0.05) else "#ffffff"


# ----------------------------------------------------------------------------- the model


def load_charlm(run_dir, *, which: str = "best"):
    """``(model, vocab, config)`` of a char-LM run directory (``nprnn train --out DIR``)."""
    from .load import read_run
    from .runs import RunDir

    loaded = read_run(RunDir(Path(run_dir)), which, "nprnn-charlm")
    return loaded.model.eval(), loaded.vocab, loaded.config


def shown(cell) -> tuple:
    """What the page can show for a cell: its states, then its gates (by name)."""
    return cell.states + tuple(g for g in cell.gate_names if g not in cell.states)


def trace(model, ids, *, layer: int = -1) -> dict:
    """Every step's states and gates of one layer, and the logits, for one sequence.

    ``model`` is a :class:`~nprnn.app.charlm.CharLM` (eval mode: no dropout); ``ids``
    (T,) int. Returns ``{name: (T, H)}`` for each of :func:`shown` (LSTM: h, c, i, f, g,
    o; GRU: h, r, z, n; RNN: h) of ``layer`` (negative counts from the last), and
    ``"logits"`` (T, V). Each step is the cell's reference step
    (:mod:`nprnn.kernels.reference`), batch 1, in float64: gi = W_ih x + b_ih,
    gh = W_hh h + b_hh, ``new_state, saved = cell.step(gi, gh, state)``, where ``saved``
    starts with the gate activations.
    """
    rnn, L = model.rnn, model.num_layers
    if not -L <= layer < L:
        raise UsageError(
            f"--layer must lie in [{-L}, {L}), got {layer} ({L} layer(s))",
            f"pass a layer from {-L} to {L - 1}",
        )
    layer %= L
    cell = rnn.cell
    ids = np.asarray(ids, dtype=np.int64)
    x = model.embedding.params["weight"].astype(np.float64)[ids]  # (T, E)
    T, H = len(ids), rnn.hidden_size
    for k in range(layer + 1):
        p = {n: a.astype(np.float64) for n, a in rnn.params.items() if n.endswith(f"_l{k}")}
        w_ih, w_hh = p[f"weight_ih_l{k}"], p[f"weight_hh_l{k}"]
        b_hh = p.get(f"bias_hh_l{k}", 0.0)
        gi = x @ w_ih.T + p.get(f"bias_ih_l{k}", 0.0)  # (T, G·H)
        rec = {n: np.zeros((T, H)) for n in shown(cell)}
        state = tuple(np.zeros((1, H)) for _ in cell.states)
        for t in range(T):
            gh = cell.recurrence.step(w_hh, state[0]) + b_hh  # (1, G·H)
            state, saved = cell.step(gi[t : t + 1], gh, state)
            for n, v in zip(cell.gate_names, saved, strict=False):  # saved: gates first
                rec[n][t] = v[0]
            for n, v in zip(cell.states, state, strict=True):
                rec[n][t] = v[0]
        x = rec["h"]  # the next layer's input (no dropout in eval mode)
    if layer == L - 1:
        w = model.head.params
        rec["logits"] = rec["h"] @ w["weight"].T.astype(np.float64) + w["bias"]  # (T, V)
    else:  # the logits need the full stack: run the model itself
        logits, _ = model.logits(ids[:, None])
        rec["logits"] = logits[:, 0].astype(np.float64)
    return rec


# ----------------------------------------------------------------------------- the page


def scale_of(cell, gate: str) -> str:
    """How ``gate`` maps onto the colour scale: ``"unit"`` (a gate in [0, 1], shown as
    2v − 1), ``"tanh"`` (an unbounded state such as the LSTM's c) or ``"signed"`` (as is)."""
    if gate in cell.unit_gates:
        return "unit"
    return "tanh" if gate in cell.states[1:] else "signed"


def _display(value: np.ndarray, scale: str) -> np.ndarray:
    """Values mapped onto the colour scale [−1, 1] (see the module docstring)."""
    if scale == "unit":
        return 2 * value - 1
    return np.tanh(value) if scale == "tanh" else value


def _token(vocab, i: int) -> str:
    tok = vocab.tokens[i]
    return _SHOW.get(tok, tok)


def render_html(
    text: str,
    values: np.ndarray,
    units,
    gate: str,
    top3: list,
    *,
    title: str = "",
    scale: str = "signed",
) -> str:
    """The HTML page: one row per unit (one ``<span class="ch">`` per character of
    ``text``, coloured by ``values[t, unit]``), then a row of top predictions.

    ``values`` (T, H) with T = len(text); ``top3[t]`` = [(token, prob)] × 3 after char t;
    ``scale``: see :func:`scale_of`.
    """
    esc = html.escape
    shown = _display(values, scale)
    rows = []
    for u in units:
        cells = []
        for t, ch in enumerate(text):
            nxt = ", ".join(f"{tok!r} {p:.2f}" for tok, p in top3[t])
            tip = f"{ch!r} t={t} {gate}[{u}]={values[t, u]:+.3f} | next: {nxt}"
            bg = colour(shown[t, u])
            cells.append(
                f'<span class="ch" style="background:{bg};color:{text_colour(bg)}" '
                f'title="{esc(tip)}">{esc(_SHOW.get(ch, ch))}</span>'
            )
        rows.append(
            f'<div class="row"><span class="lab">{esc(gate)}[{u}]</span>{"".join(cells)}</div>'
        )
    preds = "".join(
        f'<span class="ch pred" title="{esc(", ".join(f"{k!r} {p:.2f}" for k, p in top3[t]))}">'
        f"{esc(top3[t][0][0])}</span>"
        for t in range(len(text))
    )
    rows.append(f'<div class="row"><span class="lab">next?</span>{preds}</div>')
    legend = _legend(gate, scale)
    scale = {"unit": "2v−1 (0 blue, ½ white, 1 red)", "tanh": f"tanh({gate})"}.get(
        scale, "v (−1 blue, 0 white, +1 red)"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title or "nprnn viz")}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
.row {{ font-family: monospace; font-size: 18px; white-space: pre; margin: 2px 0; }}
.lab {{ display: inline-block; width: 6em; color: #555; font-size: 13px; }}
.ch {{ display: inline-block; min-width: 0.75em; text-align: center; padding: 1px 0; }}
.pred {{ color: #777; font-size: 14px; }}
.legend {{ display: flex; align-items: center; gap: 0.5em; font-size: 13px; margin: 0.8em 0; }}
.legend .sw {{ display: inline-block; width: 2.2em; text-align: center; padding: 2px 0;
  font-family: monospace; }}
</style></head><body>
<h3>{esc(title)}</h3>
<p>Colour of each character: the value after reading it, shown as {esc(scale)}.
Hover a character for the exact value and the three most likely next characters;
the last row shows the most likely next character.</p>
{legend}
{chr(10).join(rows)}
</body></html>
"""


def _legend(gate: str, scale: str) -> str:
    """The colour scale as a row of swatches labelled with the values they stand for."""
    if scale == "unit":
        labels = [f"{(v + 1) / 2:g}" for v in (-1, -0.5, 0, 0.5, 1)]
        what = f"gate {gate} in [0, 1]"
    elif scale == "tanh":
        labels = ["−∞", "−0.55", "0", "+0.55", "+∞"]
        what = f"state {gate}, shown as tanh({gate})"
    else:
        labels = ["−1", "−0.5", "0", "+0.5", "+1"]
        what = f"{gate} in [−1, 1]"
    sw = []
    for v, lab in zip((-1, -0.5, 0, 0.5, 1), labels, strict=True):
        bg = colour(v)
        sw.append(
            f'<span class="sw" style="background:{bg};color:{text_colour(bg)}">'
            f"{html.escape(lab)}</span>"
        )
    return (
        f'<div class="legend"><span>colour scale ({html.escape(what)}):</span>{"".join(sw)}</div>'
    )


def visualize(
    run_dir,
    text: str,
    *,
    units=None,
    gate: str = "h",
    layer: int = -1,
    top: int = 8,
    which: str = "best",
) -> str:
    """The HTML page for ``text`` read by the char-LM in ``run_dir`` (see the module doc)."""
    model, vocab, _ = load_charlm(run_dir, which=which)
    if not text:
        raise DataError("--text is empty", "pass some characters to show")
    if gate not in shown(model.rnn.cell):
        raise UsageError(
            f"--gate {gate!r} does not exist in a {model.model.upper()}",
            f"choose one of {', '.join(shown(model.rnn.cell))}",
        )
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
        raise UsageError(
            f"--units must be indices in [0, {H}) (hidden size {H}), got {units}",
            f"pass unit indices below {H}",
        )
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # (T, V)
    top3 = [
        [(_token(vocab, int(i)), float(p[i])) for i in np.argsort(-p, kind="stable")[:3]]
        for p in probs
    ]
    title = (
        f"{Path(run_dir).name}: {model.model.upper()} layer {layer % model.num_layers}, "
        f"{gate} of units {', '.join(map(str, units))}"
    )
    scale = scale_of(model.rnn.cell, gate)
    return render_html(text, values, units, gate, top3, title=title, scale=scale)


# ----------------------------------------------------------------------------- loss curves


def _number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


def plot_log(records: list, path, *, title: str = "", required: bool = False) -> bool:
    """train_loss / val_loss (and val_accuracy, if logged) against step, as a PNG.

    ``log.jsonl`` is not checksummed: entries that are not ``{step: int, key: number}``
    are skipped. Returns False (writing nothing) when there is nothing to draw or no
    matplotlib; with ``required`` those are a :class:`UsageError` instead.
    """
    curves = {
        k: [
            (r["step"], r[k])
            for r in records
            if isinstance(r, dict)
            and isinstance(r.get("step"), int)
            and not isinstance(r.get("step"), bool)
            and _number(r.get(k))
        ]
        for k in ("train_loss", "val_loss", "val_accuracy")
    }
    if not (curves["train_loss"] or curves["val_loss"]):
        if required:
            raise UsageError(
                "the log holds no evaluation with train_loss or val_loss",
                "train for at least --eval-every steps first",
            )
        return False
    try:
        fig = new_figure(figsize=(6.5, 4))
    except UsageError:
        if required:
            raise
        return False
    ax = fig.add_subplot()
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        if curves[key]:
            ax.plot(*zip(*curves[key], strict=True), marker=".", label=f"{label} loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (cross-entropy, nats)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if curves["val_accuracy"]:
        ax2 = ax.twinx()
        ax2.plot(
            *zip(*curves["val_accuracy"], strict=True),
            color="tab:green",
            marker=".",
            label="validation accuracy",
        )
        ax2.set_ylabel("accuracy")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


# ----------------------------------------------------------------------------- commands


def cmd_viz(opts, given: set) -> int:
    """``nprnn viz DIR --text ... [--units] [--gate] [--layer] [--top] [--out]``."""
    page = visualize(
        opts.dir,
        opts.text,
        units=opts.units,
        gate=opts.gate,
        layer=opts.layer,
        top=opts.top,
        which=opts.checkpoint,
    )
    Path(opts.out).write_text(page, encoding="utf-8")
    print(f"wrote {opts.out}")
    return 0


def cmd_plot(opts, given: set) -> int:
    """``nprnn plot DIR [--out FILE.png]``: the loss curves of a run's ``log.jsonl``."""
    from .runs import RunDir

    run = RunDir(Path(opts.dir))
    if not run.log_path.is_file():
        raise UsageError(
            f"no log.jsonl in {opts.dir}", "pass the --out directory of a training run"
        )
    out = opts.out or str(run.path / "loss.png")
    plot_log(run.read_log(), out, title=run.path.name, required=True)
    print(f"wrote {out}")
    return 0
