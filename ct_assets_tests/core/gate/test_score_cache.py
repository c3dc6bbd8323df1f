"""The score cache (ct_assets.core.gate.score_cache): cached scores are the fresh scores and only new
rows are scored; a cache of another model file or a torn file is ignored; pruning; path-like versions
refused; a cache that cannot be written is skipped."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core.gate import score_cache
from ct_assets.core.modeling import model as lgbm
from ct_assets.errors import RegistryError
from ct_assets_tests.helpers.data import SMALL_MODEL, churn_frame


@pytest.fixture
def scored(make_settings: Callable[..., Settings]) -> tuple[Settings, lgbm.LoadedModel, pl.DataFrame]:
    settings = make_settings(training=SMALL_MODEL)
    frame = churn_frame(2000, seed=3)
    folder, _ = lgbm.save(lgbm.train(frame, settings), settings.paths.models, "v0001", {})
    rows = frame.with_columns(pl.col("row_id").hash(7).alias(score_cache.HASH_COLUMN))
    return settings, lgbm.load(folder), rows


def test_cached_scores_are_the_fresh_scores_and_only_new_rows_are_scored(
    scored: tuple[Settings, lgbm.LoadedModel, pl.DataFrame],
) -> None:
    settings, model, rows = scored
    state = settings.paths.state
    first, later = rows[:1500], rows[500:]  # the next holdout: 1,000 rows seen, 500 new
    assert score_cache.score(model, first, state).reused == 0  # nothing cached yet
    score_cache.save(state, model, [first[score_cache.HASH_COLUMN].to_numpy()], [model.predict(first)])

    again = score_cache.score(model, later, state)
    assert again.reused == 1000
    np.testing.assert_array_equal(again.scores, model.predict(later))  # in the frame's order, exactly


def test_a_cache_of_another_model_file_or_a_torn_file_is_ignored(
    scored: tuple[Settings, lgbm.LoadedModel, pl.DataFrame],
) -> None:
    settings, model, rows = scored
    state = settings.paths.state
    wrong = np.full(rows.height, 0.123)
    score_cache.save(state, model, [rows[score_cache.HASH_COLUMN].to_numpy()], [wrong])
    assert score_cache.score(model, rows, state).reused == rows.height  # the file is used as it is...

    # ...but not once the model file is another one (same version name, other SHA-256).
    model.card["model_sha256"] = "0" * 64
    other = score_cache.score(model, rows, state)
    assert other.reused == 0
    np.testing.assert_array_equal(other.scores, model.predict(rows))

    path = score_cache.cache_path(state, model.version)
    path.write_bytes(path.read_bytes()[:100])  # torn
    torn = score_cache.score(model, rows, state)
    assert torn.reused == 0
    np.testing.assert_array_equal(torn.scores, model.predict(rows))


def test_prune_keeps_only_the_named_models_and_removes_temporary_files(tmp_path: Path) -> None:
    folder = tmp_path / score_cache.FOLDER
    folder.mkdir()
    for name in ("v0001.parquet", "v0002.parquet", "v0003.parquet", ".v0004.parquet.99.tmp"):
        (folder / name).write_bytes(b"x")
    score_cache.prune(tmp_path, {"v0002", "v0003"})
    assert sorted(p.name for p in folder.iterdir()) == ["v0002.parquet", "v0003.parquet"]


def test_pathlike_versions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not a model version"):
        score_cache.cache_path(tmp_path, "../v0001")


def test_a_cache_that_cannot_be_written_is_skipped_not_a_failure(
    scored: tuple[Settings, lgbm.LoadedModel, pl.DataFrame],
) -> None:
    settings, model, rows = scored
    settings.paths.state.mkdir(parents=True, exist_ok=True)
    (settings.paths.state / score_cache.FOLDER).write_text("a file where the folder should be")
    hashes = [rows[score_cache.HASH_COLUMN].to_numpy()]
    assert score_cache.save(settings.paths.state, model, hashes, [model.predict(rows)]) is False
    assert score_cache.score(model, rows, settings.paths.state).reused == 0
