"""Reading rendered HTML in tests: a parser keeping tags, text and the inside of each svg, a PNG decoder
for screenshots, and headless Chromium cut off from the network."""

import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Belt and braces for "no network": any http(s) fetch would go to a closed local port.
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
]


class Page(HTMLParser):
    """Every tag with its attributes, the text, and the tags seen inside each svg."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.svgs: list[dict[str, Any]] = []
        self._svg: dict[str, Any] | None = None
        self._title: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "svg":
            self._svg = {"label": a.get("aria-label"), "tags": [], "titles": []}
            self.svgs.append(self._svg)
        elif self._svg is not None:
            self._svg["tags"].append(tag)
            if tag == "title":
                self._title = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None
        elif tag == "title" and self._title is not None and self._svg is not None:
            self._svg["titles"].append("".join(self._title))
            self._title = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._title is not None:
            self._title.append(data)

    @property
    def tag_names(self) -> list[str]:
        return [t for t, _ in self.tags]

    @property
    def words(self) -> str:
        """The text with its whitespace runs made single spaces."""
        return " ".join("".join(self.text).split())


def parse(html: str) -> Page:
    """The tags (with their attributes), text and svgs of an HTML document, entities decoded."""
    page = Page()
    page.feed(html)
    page.close()
    return page


def decode_png(data: bytes) -> np.ndarray:
    """RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium's screenshots are)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        kind, row = int(raw[y, 0]), raw[y, 1:].astype(np.int64)
        if kind == 0:
            cur = row
        elif kind == 1:  # Sub: a running sum along the row, per channel
            cur = np.cumsum(row.reshape(width, bpp), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            cur = (row + prev) % 256
        else:  # Average or Paeth: sequential along the row
            r, p, c = row.tolist(), prev.tolist(), [0] * stride
            for i in range(stride):
                left = c[i - bpp] if i >= bpp else 0
                up = p[i]
                if kind == 3:
                    c[i] = (r[i] + (left + up) // 2) & 255
                else:
                    corner = p[i - bpp] if i >= bpp else 0
                    est = left + up - corner
                    pa, pb, pc = abs(est - left), abs(est - up), abs(est - corner)
                    c[i] = (r[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
            cur = np.array(c, dtype=np.int64)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)[:, :, :3]


def pixels_near(img: np.ndarray, color: str, tolerance: int = 12) -> int:
    rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img.astype(np.int64) - rgb).max(axis=2) <= tolerance).sum())


def offline() -> list[str]:
    """A command prefix that cuts the network off (a new, empty network namespace) where allowed."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return [unshare, "-rn"]
    return []


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    profile = tmp_path / "chromium-profile"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    proc = subprocess.run(
        [*offline(), str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc
