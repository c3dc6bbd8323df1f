"""The promotion gate: its rule, its statistics, the score cache and the validate_new_model API."""
