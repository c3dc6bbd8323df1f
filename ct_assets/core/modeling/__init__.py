"""Modeling: LightGBM training, saving and loading with its card (model), metrics, and training a challenger
from a recorded data set (challenger)."""
