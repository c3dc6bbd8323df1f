"""Every asset check with data that should pass and data that should fail."""
