"""The TOML configuration: defaults, merging, paths, the effective config, one-line errors."""
