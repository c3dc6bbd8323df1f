"""Plain logic of the continuous-training loop: no Dagster imports here, unit-tested directly."""
