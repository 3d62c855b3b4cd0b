"""The assignment's problems P1-P5: thin scripts over scratchnet (and PyTorch where pretrained nets are needed)."""
import scratchnet  # noqa: F401 - first, so that its OpenBLAS kernel choice comes before numpy loads (cpu_blas)
