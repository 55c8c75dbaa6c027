"""Optax gradient transformations over stacked per-objective gradients."""
from mmbal.transforms.combine import combine_objectives
