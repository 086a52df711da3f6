"""``nprnn.app``: the toolkit built on the library — the ``nprnn`` command line, training
runs and their directories, the text pipeline, the character language model, sequence
classification, long-range tasks, pictures and the speed table.

It uses only the public API of :mod:`nprnn`; the library never imports it.
"""

__all__: list[str] = []
