"""P5: a hand-set hard-threshold RNN that adds binary numbers, its exact checks, and learning its weights."""
