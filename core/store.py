"""The InfluxDB store, over the v1-compatible HTTP API (README: InfluxDB).

``/write`` takes line protocol, ``/query`` takes InfluxQL. InfluxDB 1.x serves it natively;
2.x and 3.x serve it through their v1 endpoints (DBRP mapping, ``Authorization: Token``).
Two error kinds leave this module: StoreUnavailable (retry later) and StoreRejected
(the request itself is wrong; retrying will not help).

A database that does not exist yet reads as empty: on a fresh InfluxDB 1.x nothing has
been stored, which is what an empty answer says. Creating it here instead would hide a
mistyped ``PQMON_INFLUX_DB`` behind a new empty database (and 2.x/3.x refuse to create
one); the collector and the importers create it when they first write.
"""

from __future__ import annotations

import gzip
import io
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import requests
from requests.adapters import HTTPAdapter

from core.errors import StoreRejected, StoreUnavailable
from core.lineproto import check_ident
from core.settings import Settings

log = logging.getLogger(__name__)

GZIP_MIN_BYTES = 4096


class InfluxStore:
    """A small, pooled, retrying client for one database."""

    def __init__(
        self,
        url: str,
        db: str,
        *,
        token: str = "",
        user: str = "",
        password: str = "",
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self.db = check_ident(db, "database name")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.database_missing = False  # set when InfluxDB said the database does not exist
        # Compressing for a server on this machine costs CPU and saves nothing.
        self.gzip = urlsplit(self.url).hostname not in ("127.0.0.1", "localhost", "::1")
        self._auth_params: dict[str, str] = {}
        self._session = requests.Session()
        self._session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=16))
        self._session.mount("https://", HTTPAdapter(pool_connections=4, pool_maxsize=16))
        if token:
            self._session.headers["Authorization"] = f"Token {token}"
        elif user:
            self._auth_params = {"u": user, "p": password}

    @classmethod
    def from_settings(cls, settings: Settings) -> InfluxStore:
        return cls(
            settings.influx_url,
            settings.influx_db,
            token=settings.influx_token,
            user=settings.influx_user,
            password=settings.influx_password,
        )

    # -- plumbing -------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        params = {**self._auth_params, **kwargs.pop("params", {})}
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                resp = self._session.request(
                    method, self.url + path, params=params, timeout=self.timeout_s, **kwargs
                )
            except requests.RequestException as exc:
                last = exc
            else:
                if resp.status_code < 300:
                    return resp
                if 400 <= resp.status_code < 500:
                    raise StoreRejected(f"InfluxDB refused {path}: {resp.status_code} {_error_text(resp)}")
                last = StoreUnavailable(f"InfluxDB {path}: {resp.status_code} {_error_text(resp)}")
            if attempt < self.retries:
                time.sleep(self.backoff_s * (2**attempt))
        raise StoreUnavailable(
            f"InfluxDB at {self.url} is not answering ({last}). Is it running? Check PQMON_INFLUX_URL."
        )

    def ping(self) -> bool:
        try:
            resp = self._session.get(self.url + "/ping", timeout=2)
        except requests.RequestException:
            return False
        return resp.status_code == 204

    def ensure_database(self) -> None:
        """Create the database on 1.x; on 2.x/3.x the DBRP mapping must exist already."""
        try:
            self._request("POST", "/query", params={"q": f'CREATE DATABASE "{self.db}"'})
        except StoreRejected as exc:
            log.info("could not create database %s (%s); assuming it exists", self.db, exc)

    # -- write ----------------------------------------------------------------------------
    def write(self, lines: Iterable[str]) -> int:
        """Write line-protocol points (ms precision); returns how many were sent."""
        body_lines = list(lines)
        if not body_lines:
            return 0
        try:
            body = ("\n".join(body_lines) + "\n").encode()
        except UnicodeEncodeError as exc:
            raise StoreRejected(f"a point is not valid UTF-8: {exc}") from None
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip and len(body) >= GZIP_MIN_BYTES:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        self._request(
            "POST",
            "/write",
            params={"db": self.db, "precision": "ms"},
            data=body,
            headers=headers,
        )
        return len(body_lines)

    # -- query ----------------------------------------------------------------------------
    def query_raw(self, q: str) -> list[dict[str, Any]]:
        resp = self._request("POST", "/query", params={"db": self.db, "epoch": "ms"}, data={"q": q})
        payload = resp.json()
        results = []
        for result in payload.get("results", []):
            if "error" in result:
                if self._no_database(str(result["error"])):
                    continue
                raise StoreRejected(f"InfluxQL error: {result['error']} in query {q[:200]!r}")
            results.append(result)
        return results

    def _no_database(self, error: str) -> bool:
        """True for InfluxDB 1.x's "database not found" (its answer is then empty); warns once."""
        if not error.startswith("database not found"):
            return False
        if not self.database_missing:
            log.warning(
                "InfluxDB has no database %r yet; reading it as empty. The collector creates it "
                "with the first data; if data was expected, check PQMON_INFLUX_DB.",
                self.db,
            )
        self.database_missing = True
        return True

    def query_csv(self, q: str) -> pd.DataFrame:
        """Run one InfluxQL SELECT and parse InfluxDB's CSV answer: far cheaper than JSON for
        large raw reads. Columns: name, tags, time (UTC ms), then the selected fields."""
        resp = self._request(
            "POST",
            "/query",
            params={"db": self.db, "epoch": "ms"},
            data={"q": q},
            headers={"Accept": "application/csv"},
        )
        if not resp.content.strip():
            return pd.DataFrame()
        df = pd.read_csv(io.BytesIO(resp.content))
        if "error" in df.columns:
            if self._no_database(str(df["error"].iloc[0])):
                return pd.DataFrame()
            raise StoreRejected(f"InfluxQL error: {df['error'].iloc[0]} in query {q[:200]!r}")
        return df

    def query(self, q: str) -> list[pd.DataFrame]:
        """Run InfluxQL; one DataFrame per series, with tags in ``df.attrs['tags']``.

        The ``time`` column holds UTC epoch milliseconds.
        """
        frames: list[pd.DataFrame] = []
        for result in self.query_raw(q):
            for series in result.get("series", []):
                df = pd.DataFrame(series.get("values", []), columns=series["columns"])
                df.attrs["name"] = series.get("name")
                df.attrs["tags"] = series.get("tags", {})
                frames.append(df)
        return frames

    def query_frame(self, q: str, tag_columns: Sequence[str] = ()) -> pd.DataFrame:
        """Run InfluxQL and concatenate every series, putting GROUP BY tags into columns."""
        frames = []
        for df in self.query(q):
            for tag in tag_columns:
                df[tag] = df.attrs["tags"].get(tag)
            frames.append(df)
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    def close(self) -> None:
        self._session.close()


def _error_text(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("error", resp.text))[:300]
    except ValueError:
        return resp.text[:300]
