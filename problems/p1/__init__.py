"""P1: a pretrained ImageNet CNN on one image: its top classes and feature maps from three depths."""
