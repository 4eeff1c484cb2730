"""``python -m cs336`` runs the ``cs336`` command line."""

from cs336.cli import main

raise SystemExit(main())
