"""Object storage of cluster mode (S3 or an S3-compatible store, through boto3): the landing,
quarantine, archive, models, reports and state areas under the [cluster] objects prefix. Credentials
and the endpoint come from boto3's own environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_REGION, AWS_ENDPOINT_URL); boto3 is imported only in cluster mode."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ct_assets.errors import ConfigError


def split_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/some/prefix -> ("bucket", "some/prefix")."""
    if not uri.startswith("s3://"):
        raise ConfigError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key.strip("/")


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime  # UTC, naive

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class ObjectStore:
    """The areas (landing/, archive/, ...) under one s3://bucket/prefix."""

    def __init__(self, root_uri: str):
        import boto3

        self.bucket, self.prefix = split_uri(root_uri)
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.client: Any = boto3.client("s3", region_name=region)

    def key(self, area: str, name: str = "") -> str:
        return "/".join(p for p in (self.prefix, area, name) if p)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def list(self, area: str) -> list[StoredObject]:
        """The objects directly in `area` (not in its sub-prefixes)."""
        out = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key(area) + "/", Delimiter="/"):
            for o in page.get("Contents", []):
                out.append(StoredObject(o["Key"], int(o["Size"]), _utc(o["LastModified"])))
        return out

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def download(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.client.download_file(self.bucket, key, str(tmp))
        os.replace(tmp, path)

    def upload(self, path: Path, key: str) -> None:
        self.client.upload_file(str(path), self.bucket, key)

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.client.exceptions.NoSuchKey:
            return None

    def move(self, key: str, target: str) -> None:
        """Copy, then delete the source (S3 has no rename); a crash between leaves both, never neither."""
        self.client.copy_object(
            Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": key}
        )
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
