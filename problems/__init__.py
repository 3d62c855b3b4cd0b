"""The assignment's problems P1-P5: thin scripts over scratchnet (and PyTorch where pretrained nets are needed)."""
from scratchnet import cpu as _cpu

# The problem scripts and the report driver are programs, not a library: they choose numpy's OpenBLAS
# kernels before anything loads numpy (scratchnet.cpu says why), and their child processes inherit it.
_cpu.choose_openblas_kernels()
