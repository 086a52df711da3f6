"""``python -m nprnn``: the command line (see :mod:`nprnn.app.cli`).

The entry point of the application, not part of the library: ``import nprnn`` never
runs it.
"""

from nprnn.app.cli import main

raise SystemExit(main())
