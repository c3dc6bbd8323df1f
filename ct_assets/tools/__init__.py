"""Developer tools built on the plain logic: the synthetic stream (simulator) and `reproduce`."""
