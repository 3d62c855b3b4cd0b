"""Problem 3: CIFAR-10 networks trained with scratchnet (the small CNN, its batch-norm twin, a better net)."""
