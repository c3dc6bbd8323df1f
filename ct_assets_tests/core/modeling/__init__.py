"""LightGBM training, the model files and their card, and the metrics."""
