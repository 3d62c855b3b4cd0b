"""Helpers shared by the problem scripts. Torch-using helpers live here, never inside scratchnet."""
