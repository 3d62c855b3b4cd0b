"""The assignment's problems P1-P5: thin scripts over scratchnet (and PyTorch where pretrained nets are needed)."""
