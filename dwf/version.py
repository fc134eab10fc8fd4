"""dwf's version (a module of its own so that every layer can name it)."""

__version__ = "0.3.0"

#: The name dwf is published under on the package index (``pip install dwf-darknet``); the
#: import name is ``dwf``. ``dwf`` there is another project (a wrapper of Digilent's WaveForms).
DISTRIBUTION = "dwf-darknet"
