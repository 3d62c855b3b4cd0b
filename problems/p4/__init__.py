"""P4: targeted adversarial examples in 8-bit pixel space and their robustness to simple transforms."""
