"""HTTP for every download: one requests Session whose urllib3 `Retry` retries connection errors and 429/5xx
answers with exponential backoff, waiting as long as a `Retry-After` header asks; files stream to a `.part`
that a later attempt resumes with a `Range` request where the server allows it, under a progress bar."""

from __future__ import annotations

import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from clinical_ner.console.progress import bar

USER_AGENT = "clinical_ner-download/0.2 (research)"
TIMEOUT_S = 60  # per connect and per read, not for the whole transfer
RETRIES = 5
BACKOFF_S = 1.0  # 1, 2, 4, 8 s between attempts (unless Retry-After says otherwise)
TRANSIENT = (429, 500, 502, 503, 504)
CHUNK = 1 << 16  # bytes per write: at most this much of a dropped transfer is fetched again


class DownloadError(Exception):
    """A download that failed for good (after the retries): the service or file cannot be had."""


def session() -> requests.Session:
    """A Session that retries transient failures of GET/HEAD (`RETRIES` times, backoff from `BACKOFF_S`),
    honouring Retry-After (429, 503)."""
    retry = Retry(
        total=RETRIES,
        backoff_factor=BACKOFF_S,
        status_forcelist=TRANSIENT,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer comes back and raise_for_status names it
    )
    http = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    http.mount("https://", adapter)
    http.mount("http://", adapter)
    http.headers["User-Agent"] = USER_AGENT
    return http


def get(http: requests.Session, url: str, accept: str = "application/json") -> requests.Response:
    """GET `url` (after the retries); raises DownloadError when it cannot be reached, HTTPError on 4xx/5xx."""
    try:
        response = http.get(url, headers={"Accept": accept}, timeout=TIMEOUT_S)
    except requests.RequestException as err:
        raise DownloadError(f"{url}: {err}") from err
    response.raise_for_status()
    return response


def download_file(http: requests.Session, url: str, part: Path, desc: str) -> Path:
    """Stream `url` into `part`, continuing a partial `part` from where it stopped when the server answers
    the `Range` request with 206 (else starting over); returns `part`. A `file://` URL is copied."""
    part = Path(part)
    part.parent.mkdir(parents=True, exist_ok=True)
    if urllib.parse.urlparse(url).scheme == "file":
        source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        try:
            shutil.copyfile(source, part)
        except OSError as err:
            raise DownloadError(f"{url}: {err}") from err
        return part
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with http.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
            if have and response.status_code == 416:  # nothing left to send: the part is whole
                return part
            response.raise_for_status()
            resumed = have and response.status_code == 206 and _starts_at(response, have)
            start = have if resumed else 0
            size = int(response.headers.get("Content-Length", 0)) or None
            with (
                open(part, "ab" if resumed else "wb") as handle,
                bar(
                    desc=desc, unit="B", total=size and start + size, initial=start, unit_scale=True
                ) as shown,
            ):
                for chunk in response.iter_content(CHUNK):
                    handle.write(chunk)
                    shown.update(len(chunk))
    except requests.RequestException as err:
        raise DownloadError(f"{url}: {err}") from err
    return part


def _starts_at(response: requests.Response, offset: int) -> bool:
    """True when a 206 answer's Content-Range starts at `offset` (`bytes <offset>-<end>/<size>`)."""
    content_range = response.headers.get("Content-Range", "")
    return content_range.startswith(f"bytes {offset}-")
