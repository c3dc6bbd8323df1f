"""The errors ct_assets reports to people: each carries a one-line message saying what and where."""


class CtError(Exception):
    """Base class: the CLI prints the message on one line and exits non-zero, without a traceback."""


class ConfigError(CtError):
    """The configuration file or a value in it is wrong."""


class WarehouseBusy(CtError):
    """Another process holds the DuckDB warehouse; try again shortly."""


class WarehouseMissing(CtError):
    """No warehouse at the configured path yet (run `ct-assets init`)."""


class RegistryError(CtError):
    """A registry action was refused (unknown version, not reviewable, path outside the models folder...)."""


class DataError(CtError):
    """The data cannot support the requested step (too few rows, missing golden set...)."""
