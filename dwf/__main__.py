"""``python -m dwf`` runs the command line."""

from dwf.interfaces.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
