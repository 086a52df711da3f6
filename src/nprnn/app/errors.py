"""The toolkit's errors: what is wrong and what to do, as fields.

Every error a user can cause carries ``what`` (what is wrong, one line) and ``fix``
(what to do about it, or None); its message, ``str(e)``, is rendered from them as
``"what — fix"``. Code that wraps an error reads ``e.what`` and supplies its own fix;
nothing parses message text::

    try:
        vocab.encode(text)
    except DataError as e:
        raise CheckpointError(f"cannot resume: {e.what}", "start a new run") from None

All are ``ValueError`` subclasses, so ``except ValueError`` still catches them.
"""

from __future__ import annotations

__all__ = ["AppError", "DataError", "CheckpointError", "UsageError", "WorkerFailed", "what_of"]


class AppError(ValueError):
    """A user error: ``what`` is wrong, ``fix`` says what to do (may be None)."""

    def __init__(self, what: str, fix: str | None = None):
        self.what = " ".join(str(what).split())  # always one line
        self.fix = None if fix is None else " ".join(str(fix).split())
        super().__init__(self.what, self.fix)

    @property
    def message(self) -> str:
        """The one-line message: ``"what — fix"`` (just ``what`` without a fix)."""
        return f"{self.what} — {self.fix}" if self.fix else self.what

    def __str__(self) -> str:
        return self.message


class DataError(AppError):
    """Bad training or evaluation data (a file, a text, a vocabulary)."""


class CheckpointError(AppError):
    """A run directory or checkpoint that cannot be read or written."""


class UsageError(AppError):
    """A command line that cannot be carried out (options, an occupied ``--out``, ...)."""


class WorkerFailed(AppError):
    """A ``--procs`` worker failed or died (:mod:`.local`): ``line`` is what the CLI
    prints, naming the process, and ``status`` its exit status."""

    def __init__(self, line: str, status: int):
        super().__init__(line)
        self.line, self.status = self.what, status


def what_of(e: BaseException) -> str:
    """What is wrong, from any exception: ``e.what`` for ours, else its one-line message.

    For wrapping: the caller adds its own fix (library errors are one line and name the
    argument, without a separate fix).
    """
    if isinstance(e, AppError):
        return e.what
    return " ".join(str(e).split()) or type(e).__name__
