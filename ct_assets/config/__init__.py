"""The one TOML configuration: columns and their roles, thresholds, paths and LightGBM parameters.

`settings` holds what the configuration is (frozen dataclasses), `parse` how a TOML table becomes
one of them, `load` where the file comes from (defaults, $CT_ASSETS_CONFIG) and the parse cache.
"""

from ct_assets.config.load import (
    CONFIG_ENV_VAR,
    default_config_text,
    effective_config_toml,
    load_settings,
)
from ct_assets.config.parse import LIGHTGBM_NAME_CHARS
from ct_assets.config.reader import check_identifier
from ct_assets.config.settings import (
    INTERNAL_PREFIX,
    LOWER_IS_BETTER,
    METRICS,
    SECONDARY_METRICS,
    Columns,
    DatasetSettings,
    Feature,
    FreshnessSettings,
    GateSettings,
    GuardrailSettings,
    HoldbackSettings,
    Paths,
    PredictionSettings,
    RetrainSettings,
    Settings,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "INTERNAL_PREFIX",
    "LIGHTGBM_NAME_CHARS",
    "LOWER_IS_BETTER",
    "METRICS",
    "SECONDARY_METRICS",
    "Columns",
    "DatasetSettings",
    "Feature",
    "FreshnessSettings",
    "GateSettings",
    "GuardrailSettings",
    "HoldbackSettings",
    "Paths",
    "PredictionSettings",
    "RetrainSettings",
    "Settings",
    "check_identifier",
    "default_config_text",
    "effective_config_toml",
    "load_settings",
]
