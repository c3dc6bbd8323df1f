"""Developer tools: the synthetic stream simulator."""
