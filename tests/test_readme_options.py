"""The documentation's option tables (moved from the README into docs/guides/ in issue 15)
are derived from the declarations in ``nprnn.app.options``, and every option of every
command has a help text (issue 12, deliver 2; finding 9)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from nprnn.app import options
from nprnn.app.declare import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [options.TrainLM, options.TrainClassifier, options.TaskAdding, options.TaskCopy,
            options.GradNorms, options.Sample, options.Eval, options.Predict, options.Viz,
            options.Plot, options.Bench, options.Repair]  # fmt: skip


def test_the_option_tables_match_the_declarations():
    assert set(options.TABLE_PAGES) == set(options.README_TABLES)
    for title, page in options.TABLE_PAGES.items():
        text = (ROOT / page).read_text(encoding="utf-8")
        assert f"<!-- options: {title} -->" in text, (title, page)
        assert options.readme_tables(text) == text, (
            f"the option tables of {page} are stale: run "
            f"python -m nprnn.app.options {' '.join(sorted(set(options.TABLE_PAGES.values())))}"
        )


def test_a_stale_table_is_caught_and_refilled(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("x\n<!-- options: train -->\n| old |\n<!-- /options -->\ny\n", encoding="utf-8")
    assert options.readme_tables(page.read_text(encoding="utf-8")) != page.read_text()
    assert options.main([str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert "| old |" not in text and "`--hidden`" in text and options.readme_tables(text) == text


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda c: c.__name__)
def test_every_option_has_help(cls):
    for f in fields(cls):
        assert f.metadata["help"].strip(), f"{cls.__name__}.{f.name} has no help"
    parser = build_parser(cls, "nprnn x")
    for action in parser._actions:
        assert action.help, action.dest
    assert parser.description


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda c: c.__name__)
def test_defaults_parse_with_their_own_parser(cls):
    """A declared default is a value the option itself accepts (help shows it)."""
    for f in fields(cls):
        m = f.metadata
        default = f.default if f.default_factory is None or f.default is not None else None
        if m["choices"] is not None and isinstance(default, str):
            assert default in m["choices"], f.name
        elif isinstance(m["type"], options.Num) and default is not None:
            assert m["type"].ok(default), f.name


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda c: c.__name__)
def test_only_a_resumable_command_explains_resume(cls):
    """The epilog on what --resume may change is in the help of the commands that have
    --resume, and only there (bench has --device, which a resume may change, but no
    --resume)."""
    epilog = build_parser(cls, "nprnn x").epilog or ""
    has_resume = any(f.name == "resume" for f in fields(cls))
    assert ("--resume continues" in epilog) == has_resume, cls.__name__
