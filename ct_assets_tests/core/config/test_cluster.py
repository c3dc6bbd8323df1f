"""[cluster]: absent, the embedded mode is untouched; present, it names where the shared warehouse,
objects and databases are, and never holds a secret."""

from pathlib import Path

import pytest

from ct_assets.config import load_settings
from ct_assets.config.cluster import CLUSTER_KEYS
from ct_assets.errors import ConfigError
from ct_assets_tests.helpers.config import write_text as write

GOOD = '[cluster]\nobjects = "s3://ct-bucket/prod/"\ndata_path = "s3://ct-bucket/lake"\n'


def test_no_cluster_table_leaves_the_embedded_mode(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path / "c.toml", "[retrain]\nmin_new_rows = 10\n")).cluster is None
    assert load_settings(write(tmp_path / "d.toml", "[cluster]\n")).cluster is None


def test_a_cluster_table_names_the_shared_places(tmp_path: Path) -> None:
    c = load_settings(write(tmp_path / "c.toml", GOOD + 'state_db = "ct_prod_state"\n')).cluster
    assert c is not None
    assert (c.objects, c.data_path) == ("s3://ct-bucket/prod", "s3://ct-bucket/lake/")
    assert (c.catalog_db, c.state_db, c.dagster_db) == ("ct_catalog", "ct_prod_state", "ct_dagster")
    assert c.object_uri("landing", "a.parquet") == "s3://ct-bucket/prod/landing/a.parquet"
    shared = load_settings(write(tmp_path / "s.toml", GOOD.replace('"s3://ct-bucket/lake"', '"/mnt/lake"')))
    assert shared.cluster is not None and shared.cluster.data_path == "/mnt/lake/"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (
            'password = "hunter2"\n',
            ["[cluster] password", "not a known setting"],
        ),  # secrets: environment only
        ('pg_host = "db"\n', ["[cluster] pg_host", "not a known setting"]),
        ('catalog_db = "Cat; DROP"\n', ["[cluster] catalog_db", "plain PostgreSQL database name"]),
    ],
)
def test_bad_cluster_settings_are_refused_in_one_line(tmp_path: Path, extra: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path / "c.toml", GOOD + extra))
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)
    assert "password" not in CLUSTER_KEYS


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('[cluster]\nobjects = "/data/shared"\ndata_path = "s3://b/lake"\n', "objects"),
        ('[cluster]\nobjects = "s3://b/p"\ndata_path = "lake"\n', "data_path"),
        ('[cluster]\ndata_path = "s3://b/lake"\n', "objects"),
    ],
)
def test_cluster_places_must_be_shared_ones(tmp_path: Path, table: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[cluster\] {key}"):
        load_settings(write(tmp_path / "c.toml", table))
