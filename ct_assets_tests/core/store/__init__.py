"""The storage layer: content hashes of rows, data sets and files."""
