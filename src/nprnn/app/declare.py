"""How options are declared, and everything derived from a declaration.

Each command is a dataclass whose fields are its options (see :mod:`.options`); a
field's metadata (made by :func:`option`) holds the help text, the parser (type and
range, or choices), how ``--resume`` treats it and where ``config.json`` stores it:

- :func:`parse` builds the argparse parser (help shows each default), parses argv and
  returns the filled dataclass plus the set of options the command line gave;
- :func:`stored` gives the values a run stores, per ``config.json`` section;
- :func:`merge_resumed` fills the options not given from a run's config and refuses
  given ``fixed`` ones that differ; :func:`check_stored` validates a stored config with
  the options' own parsers (a damaged or hand-edited run is refused before use);
  :func:`check_modes` refuses options that do nothing in the run's ``--mode``;
- :func:`markdown_table` renders the README's option tables (a test compares them).

``resume`` is ``"fixed"`` (shapes the run: must match), ``"may change"`` (taken from the
run unless given), ``"content"`` (a data file: may be given again, must hold the same
text) or None (per invocation: not stored).
"""

from __future__ import annotations

import argparse
import inspect
import math
from dataclasses import MISSING, field, fields
from typing import Any

from .errors import UsageError

__all__ = [
    "Num",
    "option",
    "flag",
    "add_options",
    "build_parser",
    "given_options",
    "parse",
    "stored",
    "changeable",
    "check_stored",
    "merge_resumed",
    "check_modes",
    "markdown_table",
    "POS_INT",
    "NONNEG_INT",
    "POS_FLOAT",
    "NONNEG_FLOAT",
    "FRACTION",
    "int_list",
    "name_list",
    "RESUME",
]

RESUME = ("fixed", "may change", "content", None)


class Num:
    """A number option: ``kind`` (int | float) in a range; parses text and checks values."""

    def __init__(self, kind, low=None, *, low_open=False, high=None, high_open=True):
        self.kind, self.low, self.high = kind, low, high
        self.low_open, self.high_open = low_open, high_open
        self.__name__ = kind.__name__

    def ok(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        if self.kind is int and not isinstance(v, int):
            return False
        if not math.isfinite(v):
            return False
        if self.low is not None and not (v > self.low if self.low_open else v >= self.low):
            return False
        return self.high is None or (v < self.high if self.high_open else v <= self.high)

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high}")
        return " and ".join(parts) or "finite"

    def __call__(self, text: str):
        try:
            v = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.__name__}, got {text!r}") from None
        if not self.ok(v):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text}")
        return v


POS_INT, NONNEG_INT = Num(int, 1), Num(int, 0)
POS_FLOAT, NONNEG_FLOAT = Num(float, 0.0, low_open=True), Num(float, 0.0)
FRACTION = Num(float, 0.0, low_open=True, high=1.0)


def int_list(text: str) -> list[int]:
    try:
        out = [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        out = []
    if not out:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return out


def name_list(choices):
    def parse(text: str) -> list[str]:
        out = [m.strip() for m in text.split(",") if m.strip()]
        if not out or any(m not in choices for m in out):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(choices)}, got {text!r}"
            )
        return out

    parse.__name__ = "list"
    return parse


def option(
    default,
    help: str,
    *,
    type=None,
    choices=None,
    metavar=None,
    resume=None,
    store=None,
    key=None,
    modes=None,
    positional=False,
    nargs=None,
    flags=None,
    shown=None,
    required=False,
    repeat=False,
    missing_ok=False,
    before=None,
):
    """A dataclass field declaring one option (see the module docstring).

    ``type``: a parser (:class:`Num`, ...); a bool default without type/choices is an
    on/off flag. ``store``/``key``: the ``config.json`` section and key (key defaults
    to the name). ``modes``: the ``--mode`` values it applies to (given in another mode
    it is an error). ``shown``: the default as help prints it (when it is computed).
    ``repeat``: may be given several times (a list). ``missing_ok``: a stored option
    that configs written before it was stored lack (they take the default, or
    ``before``: the value such runs had, when it is not the default).
    """
    assert resume in RESUME, resume
    meta = dict(
        help=help,
        type=type,
        choices=choices,
        metavar=metavar,
        resume=resume,
        store=store,
        key=key,
        modes=modes,
        positional=positional,
        nargs=nargs,
        flags=flags,
        shown=shown,
        required=required,
        repeat=repeat,
        missing_ok=missing_ok,
        before=before,
    )
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def flag(name: str) -> str:
    """The command-line spelling of option ``name``: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


def _is_switch(f) -> bool:
    m = f.metadata
    return isinstance(_default(f), bool) and m["type"] is None and m["choices"] is None


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(message, f"see '{self.prog} --help'")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _help(f) -> str:
    m, d = f.metadata, _default(f)
    text = m["help"]
    shown = m["shown"] if m["shown"] is not None else d
    if not _is_switch(f) and shown not in (None, []) and not m["positional"]:
        text += f" (default: {shown})"
    return text


def add_options(p: argparse.ArgumentParser, cls) -> None:
    """Add ``cls``'s options to ``p``; defaults are left out (see :func:`parse`)."""
    for f in fields(cls):
        m = f.metadata
        kw: dict[str, Any] = {"help": _help(f)}
        if m["positional"]:
            if m["nargs"]:
                kw["nargs"] = m["nargs"]
            p.add_argument(f.name, metavar=m["metavar"] or f.name.upper(), **kw)
            continue
        kw["default"] = argparse.SUPPRESS
        kw["dest"] = f.name
        if _is_switch(f):
            kw["action"] = "store_true"
        else:
            if m["repeat"]:
                kw["action"] = "append"
            if m["type"] is not None:
                kw["type"] = m["type"]
            if m["choices"] is not None:
                kw["choices"] = m["choices"]
            if m["metavar"]:
                kw["metavar"] = m["metavar"]
            if m["required"]:
                kw["required"] = True
        p.add_argument(*(m["flags"] or (flag(f.name),)), **kw)


def build_parser(cls, prog: str) -> argparse.ArgumentParser:
    """The parser of command ``cls``: its docstring is the description (first paragraph)
    and epilog (the rest), followed by what ``--resume`` may change (derived)."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    desc, _, epilog = doc.partition("\n\n")
    may = changeable(cls)
    if may and any(f.name == "resume" for f in fields(cls)):  # only a resumable command
        fixed = [flag(f.name) for f in fields(cls) if f.metadata["resume"] == "fixed"]
        epilog += (
            f"\n--resume continues bit-identically; options not given are taken from the "
            f"run; {', '.join(may)} may change; {', '.join(fixed)} must match; the data "
            "must hold the same text."
        )
    p = _Parser(
        prog=prog,
        description=" ".join(desc.split()),
        epilog=epilog.strip() or None,
        formatter_class=_Formatter,
        allow_abbrev=False,
    )
    add_options(p, cls)
    return p


def given_options(parsed: dict, cls) -> set:
    """The names of the options the command line gave (positionals count as given)."""
    return {f.name for f in fields(cls) if f.name in parsed}


def parse(cls, argv, prog: str):
    """``(options, given)``: ``cls`` filled from ``argv`` (defaults for the rest) and the
    set of option names the command line gave. ``--help`` raises ``SystemExit(0)``."""
    ns = vars(build_parser(cls, prog).parse_args(list(argv)))
    return cls(**ns), given_options(ns, cls)


# ----------------------------------------------------------------------------- config


def stored(opts) -> dict:
    """``{section: {key: value}}`` of the options ``opts`` stores in ``config.json``."""
    out: dict = {}
    for f in fields(opts):
        m = f.metadata
        if m["store"] is not None:
            out.setdefault(m["store"], {})[m["key"] or f.name] = getattr(opts, f.name)
    return out


def changeable(cls) -> list[str]:
    """The flags ``--resume`` lets change (resume == "may change")."""
    return [flag(f.name) for f in fields(cls) if f.metadata["resume"] == "may change"]


def _lookup(cfg: dict, f):
    m = f.metadata
    section = cfg.get(m["store"])
    if not isinstance(section, dict):
        return MISSING
    return section.get(m["key"] or f.name, MISSING)


def check_stored(cls, cfg: dict) -> None:
    """``ValueError`` naming the first stored option of ``cls`` in ``cfg`` that is missing
    or that the option itself would refuse (its parser, its choices)."""
    for f in fields(cls):
        m = f.metadata
        if m["store"] is None or m["resume"] not in ("fixed", "may change"):
            continue
        v = _lookup(cfg, f)
        if v is MISSING and m["missing_ok"]:
            continue
        if v is MISSING:
            raise ValueError(f"config lacks {m['key'] or f.name!r}")
        if m["modes"] is not None and v is None:
            continue  # an option that does not apply to the run's mode
        if m["choices"] is not None:
            ok = isinstance(v, str) and v in m["choices"]
        elif isinstance(m["type"], Num):
            ok = m["type"].ok(v)
        elif _is_switch(f):
            ok = isinstance(v, bool)
        else:
            ok = v is None or isinstance(v, str)
        if not ok:
            raise ValueError(f"config {m['key'] or f.name}={v!r} is not a valid {flag(f.name)}")


def merge_resumed(opts, given: set, cfg: dict) -> None:
    """Fill the options not given from the run's config (checked by :func:`check_stored`);
    a given ``fixed`` option that differs raises :class:`UsageError`."""
    for f in fields(opts):
        m = f.metadata
        if m["resume"] not in ("fixed", "may change"):
            continue
        have = _lookup(cfg, f)
        if have is MISSING and m["before"] is not None and f.name not in given:
            setattr(opts, f.name, m["before"])  # a run from before the option was stored
            continue
        if have is MISSING or (have is None and m["modes"] is not None):
            continue  # (an option of another mode than the run's: check_modes tells)
        if f.name in given:
            if m["resume"] == "fixed" and getattr(opts, f.name) != have:
                fl = flag(f.name)
                raise UsageError(
                    f"{fl} {getattr(opts, f.name)} does not match the run being resumed "
                    f"({fl} {have})",
                    f"omit {fl}, or start a new run",
                )
        else:
            setattr(opts, f.name, have)


def check_modes(opts, given: set, mode: str) -> None:
    """Refuse given options that do nothing in ``mode`` (``option(modes=...)``)."""
    for f in fields(opts):
        modes = f.metadata["modes"]
        if modes is not None and mode not in modes and f.name in given:
            fl = flag(f.name)
            raise UsageError(
                f"{fl} applies to --mode {' or '.join(modes)} only, and this run is in {mode} mode",
                f"drop {fl}, or pass --mode {modes[0]}",
            )


# ----------------------------------------------------------------------------- README


def markdown_table(cls) -> str:
    """The README's table of ``cls``'s options: option, default, on ``--resume``, meaning."""
    rows = ["| option | default | `--resume` | what it does |", "|---|---|---|---|"]
    for f in fields(cls):
        m = f.metadata
        if m["positional"]:
            continue
        name = " ".join(m["flags"] or (flag(f.name),))
        d = m["shown"] if m["shown"] is not None else _default(f)
        d = "" if d is None or (_is_switch(f) and d is False) else f"`{d}`"
        if m["choices"] is not None:
            name += " " + "\\|".join(m["choices"])
        resume = {"fixed": "must match", "may change": "may change", "content": "same text"}
        text = m["help"].replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{name}` | {d} | {resume.get(m['resume'], '')} | {text} |")
    return "\n".join(rows)
