"""scratchnet: a from-scratch deep-learning library in NumPy, with CuPy as a drop-in GPU backend."""
from . import backend, io  # noqa: F401
