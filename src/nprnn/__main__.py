"""``python -m nprnn``: the command line (see ``nprnn.cli``)."""

from .cli import main

raise SystemExit(main())
