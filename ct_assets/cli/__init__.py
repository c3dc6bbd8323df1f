"""The `ct-assets` command line."""
