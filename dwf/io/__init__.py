"""Layer 2, *io*: the reader (maps, views, backends, change detection) and the writer (atomic
writes). Imports only :mod:`dwf.format` and the errors."""
