"""`ct-assets predict FILE [--out F] [--version V]`: score a file with the champion (or V, from the models
folder only), after validating it as ingest does; Parquet out."""

from __future__ import annotations

from pathlib import Path

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling import shared
from ct_assets.core.predictions.files import FileScores, check_paths, default_out, score_file
from ct_assets.errors import RegistryError
from ct_assets.store.warehouse import connect_reader

READ_WAIT_SECONDS = 30.0  # how long to wait for a writer to let go of the warehouse (to read the champion)


def run_predict(settings: Settings, file: Path, out: Path | None, version: str | None) -> FileScores:
    """Score `file` with the champion (or `version`) into `out` (default: beside the file)."""
    target = out or default_out(file)
    check_paths(settings, file, target)  # a missing file is named before anything else is opened
    model = shared.load(settings, _version(settings, version))
    return score_file(settings, file, model, target, utc_now())


def _version(settings: Settings, version: str | None) -> str:
    """The version asked for, if the models folder holds it; else the champion."""
    if version is not None:
        if settings.cluster is not None:
            shared.fetch(settings, version)
        if not lgbm.model_dir(settings.paths.models, version).is_dir():
            raise RegistryError(
                f"no model {version} in {settings.paths.models} (`ct-assets registry list` shows the versions)"
            )
        return version
    with connect_reader(settings, wait_seconds=READ_WAIT_SECONDS) as con:
        champion = registry.champion(con)
    if champion is None:
        raise RegistryError("no champion yet to score with: run `ct-assets cycle` first, or pass --version V")
    return champion


def describe(scored: FileScores, asked: str | None, threshold: float) -> str:
    """One line for people."""
    who = f"model {scored.version}" if asked else f"champion {scored.version}"
    return (
        f"wrote {scored.out}: {scored.rows} rows scored by {who}, {scored.positive} decided positive "
        f"at {threshold:g}"
    )
