"""``python -m dwf`` runs the command line."""

from dwf.cli import main

raise SystemExit(main())
