"""``nprnn.app``: the toolkit built on the library — the ``nprnn`` command line, training
runs and their directories, the text pipeline, the character language model, sequence
classification, long-range tasks, pictures and the speed table.

It uses only the public API of :mod:`nprnn` (never a private name); the library never
imports it. From Python, :func:`load_run` (also ``nprnn.load_run``) opens a run::

    run = nprnn.load_run("runs/names-lstm")
    run.sample(5, temperature=0.8)      # five invented names
    run.score("Maria\\nJohn\\n")          # {"loss", "bits_per_char", "perplexity"}
"""

from .errors import CheckpointError, DataError, UsageError
from .load import ClassifierRun, LanguageModelRun, load_run

__all__ = [
    "load_run",
    "LanguageModelRun",
    "ClassifierRun",
    "DataError",
    "CheckpointError",
    "UsageError",
]
