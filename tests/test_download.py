"""Download CLIs against small recorded-style responses (tests/fixtures/download): no network is touched."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import clinical_ner.data.download as download
from clinical_ner.pretrain.corpora import read_language

FIXTURES = Path(__file__).parent / "fixtures" / "download"


def _route(url: str) -> bytes:
    """The fixture a URL would have answered with; unknown URLs are a 404 like the real services."""
    parsed = urllib.parse.urlparse(url)
    query = dict(urllib.parse.parse_qsl(parsed.query))
    if url.startswith(download.DAILYMED_API):
        if parsed.path.endswith("/spls.json"):
            return (FIXTURES / f"dailymed_spls_page{query['page']}.json").read_bytes()
        if parsed.path.endswith(".xml"):
            return (FIXTURES / "spl_minimal.xml").read_bytes()
    if url.startswith(download.CIMA_API):
        if parsed.path.endswith("/medicamentos"):
            return (FIXTURES / f"cima_medicamentos_p{query['pagina']}.json").read_bytes()
        if "/docSegmentado/contenido/" in parsed.path:
            kind = {"1": "ft", "2": "p"}[parsed.path.rsplit("/", 1)[-1]]
            if query["nregistro"] == "00001":
                return (FIXTURES / f"cima_contenido_{kind}.json").read_bytes()
            if query["nregistro"] == "00002" and kind == "ft":
                return (FIXTURES / "cima_contenido_p.json").read_bytes()
            return b""  # no segmented document of this type
    raise urllib.error.HTTPError(url, 404, "Not Found", None, None)


@pytest.fixture
def offline(monkeypatch) -> list[str]:
    """Replace urlopen by the fixture router; returns the list of requested URLs."""
    requested: list[str] = []

    def fake_urlopen(request, timeout=None):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        requested.append(url)
        return io.BytesIO(_route(url))

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    return requested


def test_dailymed_paginates_limits_and_resumes(tmp_path, offline):
    download.main(["dailymed", "--limit", "3", "--out", str(tmp_path), "--delay", "0"])
    files = sorted(p.name for p in tmp_path.glob("*.xml"))
    assert files == [f"00000000-0000-4000-8000-00000000000{i}.xml" for i in (1, 2, 3)]
    assert sum("spls.json" in url for url in offline) == 2  # both list pages
    docs = read_language(tmp_path)  # the corpus reader takes the saved XML as is
    assert any("1 INDICATIONS AND USAGE" in d.text for d in docs)
    offline.clear()
    download.main(["dailymed", "--limit", "2", "--out", str(tmp_path), "--delay", "0"])
    assert not any(url.endswith(".xml") for url in offline)  # present files are not fetched again


def test_cima_writes_jsonl_of_sections(tmp_path, offline):
    download.main(["cima", "--limit", "3", "--out", str(tmp_path), "--delay", "0"])
    records = [
        json.loads(line) for line in (tmp_path / "cima.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert [r["id"] for r in records] == ["cima:00001:ft", "cima:00001:p", "cima:00002:ft"]
    ft = records[0]["text"]
    assert ft.startswith("EJEMPLINA 10 mg comprimidos")
    assert "4.1 Indicaciones terapéuticas\nTexto inventado para pruebas de software." in ft
    assert "Primera línea & dosis ficticia.\nSegunda línea." in ft
    assert "Edad | Dosis" in ft and "ignored" not in ft and "<" not in ft
    assert sum("/medicamentos" in url for url in offline) == 2
    # a rerun resumes: nothing is appended twice
    download.main(["cima", "--limit", "3", "--out", str(tmp_path), "--delay", "0"])
    assert len((tmp_path / "cima.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    assert len(read_language(tmp_path)) == 3


def test_limit_stops_early(tmp_path, offline):
    download.main(["cima", "--limit", "1", "--docs", "ft", "--out", str(tmp_path), "--delay", "0"])
    assert (tmp_path / "cima.jsonl").read_text(encoding="utf-8").count("\n") == 1
    assert sum("/medicamentos" in url for url in offline) == 1


def test_unreachable_service_is_one_line_error(tmp_path, monkeypatch, capsys):
    def refuse(request, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    with pytest.raises(SystemExit) as exit_info:
        download.main(["dailymed", "--limit", "1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: dailymed: the service could not be reached")
