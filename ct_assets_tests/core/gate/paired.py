"""Two correlated models scored on the same rows, the pair the tests of the gate's statistics compare."""

import numpy as np


def two_models(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, challenger, champion): two correlated models sharing one latent signal, the challenger
    a little sharper, so their AUC difference is positive but uncertain."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    signal = 1.2 * y + rng.normal(0, 1, n)
    challenger = 1 / (1 + np.exp(-(signal + rng.normal(0, 0.5, n))))
    champion = 1 / (1 + np.exp(-(0.8 * signal + rng.normal(0, 0.7, n))))
    return y, challenger, champion
