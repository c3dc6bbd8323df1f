"""The webhook is called only when configured: no socket is opened without one, one POST to it with one,
and an open cause is not alerted twice."""

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ct_assets.config import Settings
from ct_assets.core import alerts
from ct_assets.store.sql import fetch_value
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets_tests.helpers.processes import HOST
from ct_assets_tests.helpers.servers import webhook_server

LOOPBACK = HOST
_CONNECTS: list[list[Any]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _CONNECTS:
        _CONNECTS[-1].append(args[1])


sys.addaudithook(_audit)


@contextlib.contextmanager
def socket_connects() -> Iterator[list[Any]]:
    """Addresses this process connects sockets to while the block runs (Python's audit events)."""
    seen: list[Any] = []
    _CONNECTS.append(seen)
    try:
        yield seen
    finally:
        _CONNECTS.remove(seen)


def test_the_webhook_is_called_only_when_configured(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # the POST must go to the local server itself
    now = datetime.now(UTC).replace(tzinfo=None)
    with webhook_server(status=204) as hook:
        url = hook.url
        quiet = make_settings(alerts={"webhook_url": ""})
        init_warehouse(quiet)
        with socket_connects() as connects:
            sent = alerts.raise_alert(
                quiet, kind="block", cause="block:v0002", message="blocked v0002", now=now
            )
        assert sent is not None
        assert connects == [] and hook.requests == []
        with connect_reader(quiet) as con:
            assert fetch_value(con, "SELECT delivered FROM alerts") == "no webhook configured"

        loud = make_settings(alerts={"webhook_url": url})
        assert loud.paths.warehouse == quiet.paths.warehouse
        with socket_connects() as connects:
            sent = alerts.raise_alert(
                loud, kind="block", cause="block:v0003", message="blocked v0003", now=now
            )
            again = alerts.raise_alert(
                loud, kind="block", cause="block:v0003", message="blocked v0003", now=now
            )
        assert sent is not None and again is None  # an open cause is not alerted twice
        assert [tuple(a[:2]) for a in connects] == [(LOOPBACK, int(url.split(":")[2].split("/")[0]))]
        assert [(r["method"], r["path"]) for r in hook.requests] == [("POST", "/hooks/ct")]
        payload = json.loads(hook.requests[0]["body"])
        assert (payload["kind"], payload["cause"], payload["message"]) == (
            "block",
            "block:v0003",
            "blocked v0003",
        )
        with connect_reader(loud) as con:
            delivered = [
                r[0] for r in con.execute("SELECT delivered FROM alerts ORDER BY alert_id").fetchall()
            ]
        assert delivered == ["no webhook configured", "sent (HTTP 204)"]
