"""``python -m dwf`` runs the command line."""

from dwf.interfaces.cli import main

raise SystemExit(main())
