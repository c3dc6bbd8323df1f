"""Model folders and reports shared through object storage (cluster mode): a saved version is
published to <objects>/models/<version>/ (model.txt, card.json) and a report to <objects>/reports/;
a host that needs a version it does not hold fetches it into its own models folder first. Embedded,
every function here is the plain local one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ct_assets.config import Settings
from ct_assets.core.modeling import model as lgbm
from ct_assets.errors import RegistryError
from ct_assets.store.objects import ObjectStore

MODELS, REPORTS = "models", "reports"


def publish(s: Settings, version: str) -> None:
    """Upload a saved version's files (card.json last: a version with a card is complete)."""
    if s.cluster is None:
        return
    store = ObjectStore(s.cluster.objects)
    folder = lgbm.model_dir(s.paths.models, version)
    for name in (lgbm.MODEL_FILE, lgbm.CARD_FILE):
        store.upload(folder / name, store.key(MODELS, f"{version}/{name}"))


def fetch(s: Settings, version: str) -> Path:
    """The version's local folder, downloaded first when this host does not hold it yet."""
    folder = lgbm.model_dir(s.paths.models, version)
    if s.cluster is None or (folder / lgbm.CARD_FILE).is_file():
        return folder
    store = ObjectStore(s.cluster.objects)
    if not store.exists(store.key(MODELS, f"{version}/{lgbm.CARD_FILE}")):
        raise RegistryError(f"model {version} is not in {store.uri(store.key(MODELS, version))}")
    tmp = folder.with_name(f".fetch-{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for name in (lgbm.MODEL_FILE, lgbm.CARD_FILE):
        store.download(store.key(MODELS, f"{version}/{name}"), tmp / name)
    if not (folder / lgbm.CARD_FILE).is_file():
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load(s: Settings, version: str) -> lgbm.LoadedModel:
    """lgbm.load_version, from object storage when this host does not hold the version."""
    fetch(s, version)
    return lgbm.load_version(s.paths.models, version)


def publish_report(s: Settings, *files: Path) -> None:
    """Upload report files to <objects>/reports/."""
    if s.cluster is None:
        return
    store = ObjectStore(s.cluster.objects)
    for f in files:
        store.upload(f, store.key(REPORTS, f.name))
