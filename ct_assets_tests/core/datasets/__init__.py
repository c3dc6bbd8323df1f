"""The golden set and the recorded training data set over the append-only warehouse."""
