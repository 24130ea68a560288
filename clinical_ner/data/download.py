"""Fetch continual-pretraining text from the public drug-label services (needs network).

    python -m clinical_ner.data.download dailymed --limit 500 --out $CLINICAL_NER_CORPORA/en/dailymed
    python -m clinical_ner.data.download cima --limit 500 --out $CLINICAL_NER_CORPORA/es/cima

`dailymed`: NLM DailyMed web services v2: the SPL list (`spls.json`, paginated) and each label's SPL XML
(`spls/{setid}.xml`), saved as `<setid>.xml` exactly as served (the corpus reader extracts the text).
`cima`: the AEMPS CIMA REST API: the medicine list (`medicamentos`, paginated) and, per medicine, the segmented
ficha tecnica (SmPC, tipoDoc 1) and/or prospecto (leaflet, tipoDoc 2) (`docSegmentado/contenido/{tipo}`),
HTML stripped, written as JSON Lines `{"id", "text"}` to `cima.jsonl`.

Requests go through clinical_ner/data/http.py (retries with backoff, Retry-After honoured); a bar shows the
labels or medicines done. Files already present are kept (a rerun resumes). Check each service's terms before redistributing the text:
DailyMed/openFDA labels are public domain; CIMA's reuse terms are not verified here (see the corpora SOURCE.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import requests

from clinical_ner.console.progress import bar
from clinical_ner.data import http
from clinical_ner.errors import UserError, cli
from clinical_ner.files.atomic import atomic_write_text

log = logging.getLogger(__name__)

DAILYMED_API = "https://dailymed.nlm.nih.gov/dailymed/services/v2"
CIMA_API = "https://cima.aemps.es/cima/rest"
CIMA_DOC_TYPES = {"ft": 1, "p": 2}  # ficha tecnica (SmPC), prospecto (package leaflet)


def fetch(session: requests.Session, url: str, accept: str = "application/json") -> bytes:
    """GET `url` (retried, see clinical_ner/data/http.py); a final HTTP error raises requests.HTTPError."""
    return http.get(session, url, accept).content


def fetch_json(session: requests.Session, url: str) -> object:
    """GET and parse a JSON response."""
    try:
        return json.loads(fetch(session, url).decode("utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{url}: the service answered with something that is not JSON ({err})") from None


def paged(page_of: Callable[[int], tuple[list, bool]], limit: int) -> Iterator:
    """The items of a paginated listing, pages 1, 2, ... (`page_of(n)`: its items and whether it is the last
    page), at most `limit`; a page is fetched only when the ones before it fell short of `limit`."""
    page, seen = 1, 0
    while seen < limit:
        items, last = page_of(page)
        for item in items:
            if seen >= limit:
                return
            seen += 1
            yield item
        if not items or last:
            return
        page += 1


# ---------------------------------------------------------------------------------------------- DailyMed


def dailymed_setids(
    session: requests.Session, limit: int, query: str | None, page_size: int = 100
) -> Iterator[str]:
    """SPL set ids from the paginated `spls.json` list (optionally `drug_name=query`), at most `limit`."""

    def page_of(page: int) -> tuple[list, bool]:
        params = {"page": page, "pagesize": min(page_size, 100)}
        if query:
            params["drug_name"] = query
        listing = fetch_json(session, f"{DAILYMED_API}/spls.json?{urllib.parse.urlencode(params)}")
        total_pages = int((listing.get("metadata") or {}).get("total_pages") or page)
        return listing.get("data") or [], page >= total_pages

    return (entry["setid"] for entry in paged(page_of, limit))


def download_dailymed(out: Path, limit: int, query: str | None = None, delay: float = 0.2) -> list[Path]:
    """Save up to `limit` SPL XML files as `<out>/<setid>.xml`; returns the files (existing ones kept)."""
    out.mkdir(parents=True, exist_ok=True)
    session = http.session()
    files = []
    for setid in bar(dailymed_setids(session, limit, query), desc="dailymed", unit="label", total=limit):
        path = out / f"{setid}.xml"
        if not path.exists():
            url = f"{DAILYMED_API}/spls/{urllib.parse.quote(setid)}.xml"
            xml = fetch(session, url, accept="application/xml")
            atomic_write_text(path, xml.decode("utf-8"))
            time.sleep(delay)  # be polite to a free public service
        files.append(path)
    return files


# ---------------------------------------------------------------------------------------------- CIMA


class _HtmlText(HTMLParser):
    """HTML to plain text: block elements end lines, scripts and styles are dropped."""

    BLOCKS = {"p", "div", "li", "tr", "br", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self.BLOCKS:
            self._flush()
        elif tag in ("td", "th"):
            self._parts.append(" | ")

    def handle_endtag(self, tag) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data) -> None:
        if not self._skip:
            self._parts.append(data)

    def _flush(self) -> None:
        line = " ".join("".join(self._parts).split()).strip(" |")
        if line:
            self.lines.append(line)
        self._parts = []

    def text(self) -> str:
        self._flush()
        return "\n".join(self.lines)


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment, one block per line."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return parser.text()


def cima_medicines(session: requests.Session, limit: int, query: str | None) -> Iterator[dict]:
    """Medicines from the paginated `medicamentos` search (optionally `nombre=query`), at most `limit`."""

    def page_of(page: int) -> tuple[list, bool]:
        params = {"pagina": page}
        if query:
            params["nombre"] = query
        listing = fetch_json(session, f"{CIMA_API}/medicamentos?{urllib.parse.urlencode(params)}")
        results = listing.get("resultados") or []
        total = int(listing.get("totalFilas") or 0)
        size = int(listing.get("tamanioPagina") or len(results) or 1)
        return results, page * size >= total

    return paged(page_of, limit)


def cima_document_text(session: requests.Session, nregistro: str, doc_type: int) -> str:
    """Section titles and text of one segmented document, or "" when the medicine has none of that type."""
    url = f"{CIMA_API}/docSegmentado/contenido/{doc_type}?{urllib.parse.urlencode({'nregistro': nregistro})}"
    try:
        body = fetch(session, url)
    except requests.HTTPError as err:
        if err.response is not None and err.response.status_code == 404:
            return ""
        raise
    if not body.strip():  # medicines without a segmented document of this type
        return ""
    try:
        sections = json.loads(body.decode("utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{url}: the service answered with something that is not JSON ({err})") from None
    if isinstance(sections, dict):  # tolerate a wrapped list
        sections = sections.get("secciones") or sections.get("resultados") or []
    blocks = []
    for section in sections or []:
        title = " ".join(str(section.get(key) or "") for key in ("seccion", "titulo")).strip()
        body = html_to_text(str(section.get("contenido") or ""))
        blocks.append("\n".join(part for part in (title, body) if part))
    return "\n\n".join(block for block in blocks if block)


def download_cima(
    out: Path, limit: int, query: str | None = None, docs: tuple[str, ...] = ("ft", "p"), delay: float = 0.2
) -> Path:
    """Append up to `limit` medicines' documents to `<out>/cima.jsonl` (ids `cima:<nregistro>:<ft|p>`);
    ids already in the file are skipped, so a rerun resumes."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cima.jsonl"
    done = set()
    if path.exists():
        done = {
            json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
        }
    session = http.session()
    medicines = bar(cima_medicines(session, limit, query), desc="cima", unit="medicine", total=limit)
    with open(path, "a", encoding="utf-8") as handle:
        for medicine in medicines:
            nregistro = str(medicine["nregistro"])
            for doc in docs:
                doc_id = f"cima:{nregistro}:{doc}"
                if doc_id in done:
                    continue
                text = cima_document_text(session, nregistro, CIMA_DOC_TYPES[doc])
                time.sleep(delay)
                if text:
                    name = medicine.get("nombre")
                    record = {"id": doc_id, "text": f"{name}\n\n{text}" if name else text}
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                    handle.flush()
                    done.add(doc_id)
    return path


# ---------------------------------------------------------------------------------------------- CLI


@cli
def main(argv: list[str] | None = None) -> None:
    """`python -m clinical_ner.data.download dailymed|cima --limit N --out DIR`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=["dailymed", "cima"])
    parser.add_argument(
        "--limit", type=int, required=True, help="number of labels (dailymed) or medicines (cima)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (e.g. $CLINICAL_NER_CORPORA/en/x)"
    )
    parser.add_argument("--query", help="drug name filter (dailymed drug_name, cima nombre)")
    parser.add_argument("--docs", default="ft,p", help="cima: ft (ficha tecnica), p (prospecto) or ft,p")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds between document requests")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    try:
        if args.source == "dailymed":
            files = download_dailymed(args.out, args.limit, args.query, args.delay)
            print(f"{len(files)} SPL files in {args.out}")
        else:
            docs = tuple(d.strip() for d in args.docs.split(",") if d.strip())
            unknown = [d for d in docs if d not in CIMA_DOC_TYPES]
            if unknown or not docs:
                raise UserError(f"--docs must list ft and/or p, got {args.docs!r}")
            path = download_cima(args.out, args.limit, args.query, docs, args.delay)
            print(f"CIMA documents in {path}")
    except http.DownloadError as err:
        raise UserError(f"{args.source}: the service could not be reached ({err})") from None
    except requests.HTTPError as err:
        raise UserError(f"{args.source}: the service answered {err}") from None


if __name__ == "__main__":
    main()
