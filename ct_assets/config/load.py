"""Loading the configuration: the built-in defaults, the user's file merged over them, parsed once per
file version (cached by path, modification time and size, so an edited file takes effect at once)."""

from __future__ import annotations

import copy
import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from ct_assets.config.parse import parse_settings
from ct_assets.config.settings import Settings
from ct_assets.errors import ConfigError

CONFIG_ENV_VAR = "CT_ASSETS_CONFIG"


def default_config_text() -> str:
    return resources.files("ct_assets").joinpath("default_config.toml").read_text(encoding="utf-8")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; the [features] table and every non-table value are replaced whole."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key != "features" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_settings(path: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> Settings:
    """Load the defaults, merge the file at `path` (or $CT_ASSETS_CONFIG) over them, and validate.

    Parsed once per content: a second call for the same path, working directory and file bytes
    returns the same (frozen) Settings without parsing again, and an edited file is parsed afresh.
    Raises ConfigError with a one-line message naming the file, the table and the key.
    """
    if path is None:
        path = os.environ.get(CONFIG_ENV_VAR) or None
    base = cwd or Path.cwd()
    p = Path(path).expanduser() if path is not None else None
    text = _read(p) if p is not None else None
    key = (str(p), text, str(base))
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    raw = tomllib.loads(default_config_text())
    source = "defaults"
    if p is not None and text is not None:
        source = str(p)
        try:
            raw = _merge(raw, tomllib.loads(text))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
    settings = parse_settings(raw, source, base)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = settings
    return settings


_CACHE: dict[tuple[str, str | None, str], Settings] = {}
_CACHE_SIZE = 16


def _read(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist (from {CONFIG_ENV_VAR} or --config)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {p} cannot be read: {e}") from None


def effective_config_toml(settings: Settings) -> str:
    """The effective configuration as TOML, a starting point for a user's own file."""
    import tomli_w

    header = (
        "# ct_assets effective configuration "
        f"(defaults merged with: {settings.source}).\n"
        "# Save it, edit it, and point CT_ASSETS_CONFIG at it. Relative paths resolve against the\n"
        "# working directory.\n\n"
    )
    return header + tomli_w.dumps(settings.raw)
