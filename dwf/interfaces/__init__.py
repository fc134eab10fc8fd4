"""Layer 4, *interfaces*: the command line, notebook display, plots."""
