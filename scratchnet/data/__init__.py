"""Datasets and augmentation for scratchnet (pure NumPy; augmentation also runs on CuPy arrays)."""
from .augment import (channel_stats, cutout, iterate_minibatches, normalize, random_crop,  # noqa: F401
                      random_flip)
from .cifar import (CLASS_NAMES, CifarData, DatasetError, default_cache_root,  # noqa: F401
                    find_dataset_dir, load_cifar10)
