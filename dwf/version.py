"""dwf's version (a module of its own so that every layer can name it)."""

__version__ = "0.2.0"
