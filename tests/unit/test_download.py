"""Download CLIs against recorded-style responses (tests/fixtures/download) served by a local HTTP server in a
thread: no network is touched; retries, Retry-After and errors are real HTTP."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from contextlib import ExitStack
from pathlib import Path

import pytest
from local_server import local_server, send

import clinical_ner.data.download as download
from clinical_ner.data import http
from clinical_ner.pretrain.corpora import read_language

FIXTURES = Path(__file__).parent.parent / "fixtures" / "download"


def _route(handler) -> None:
    """Answer as the services would from the fixtures; unknown paths are a 404 like the real services."""
    parsed = urllib.parse.urlparse(handler.path)
    query = dict(urllib.parse.parse_qsl(parsed.query))
    path = parsed.path
    if path == "/dailymed/spls.json":
        return send(handler, 200, (FIXTURES / f"dailymed_spls_page{query['page']}.json").read_bytes())
    if path.startswith("/dailymed/spls/") and path.endswith(".xml"):
        return send(handler, 200, (FIXTURES / "spl_minimal.xml").read_bytes())
    if path == "/cima/medicamentos":
        return send(handler, 200, (FIXTURES / f"cima_medicamentos_p{query['pagina']}.json").read_bytes())
    if path.startswith("/cima/docSegmentado/contenido/"):
        kind = {"1": "ft", "2": "p"}[path.rsplit("/", 1)[-1]]
        if query["nregistro"] == "00001":
            return send(handler, 200, (FIXTURES / f"cima_contenido_{kind}.json").read_bytes())
        if query["nregistro"] == "00002" and kind == "ft":
            return send(handler, 200, (FIXTURES / "cima_contenido_p.json").read_bytes())
        return send(handler, 200)  # no segmented document of this type: an empty answer
    return send(handler, 404, b"Not Found")


@pytest.fixture
def serve(monkeypatch):
    """`serve(answer)`: a local server answering with `answer`, both services pointed at it; returns the list
    of requests it receives."""
    with ExitStack() as stack:

        def start(answer) -> list:
            base, seen = stack.enter_context(local_server(answer))
            monkeypatch.setattr(download, "DAILYMED_API", f"{base}/dailymed")
            monkeypatch.setattr(download, "CIMA_API", f"{base}/cima")
            monkeypatch.setattr(http, "BACKOFF_S", 0.01)  # retries without the real pauses
            return seen

        yield start


@pytest.fixture
def offline(serve) -> list:
    """The services, answered from the fixtures; returns the requests they receive."""
    return serve(_route)


def test_dailymed_paginates_limits_and_resumes(tmp_path, offline):
    download.main(["dailymed", "--limit", "3", "--out", str(tmp_path), "--delay", "0"])
    files = sorted(p.name for p in tmp_path.glob("*.xml"))
    assert files == [f"00000000-0000-4000-8000-00000000000{i}.xml" for i in (1, 2, 3)]
    assert sum("spls.json" in r.path for r in offline) == 2  # both list pages
    docs = read_language(tmp_path)  # the corpus reader takes the saved XML as is
    assert any("1 INDICATIONS AND USAGE" in d.text for d in docs)
    offline.clear()
    download.main(["dailymed", "--limit", "2", "--out", str(tmp_path), "--delay", "0"])
    assert not any(r.path.endswith(".xml") for r in offline)  # present files are not fetched again


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
    assert sum("/medicamentos" in r.path for r in offline) == 2
    # a rerun resumes: nothing is appended twice
    download.main(["cima", "--limit", "3", "--out", str(tmp_path), "--delay", "0"])
    assert len((tmp_path / "cima.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    assert len(read_language(tmp_path)) == 3


def test_limit_stops_early(tmp_path, offline):
    download.main(["cima", "--limit", "1", "--docs", "ft", "--out", str(tmp_path), "--delay", "0"])
    assert (tmp_path / "cima.jsonl").read_text(encoding="utf-8").count("\n") == 1
    assert sum("/medicamentos" in r.path for r in offline) == 1


def test_unreachable_service_is_one_line_error(tmp_path, monkeypatch, capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(download, "DAILYMED_API", f"http://127.0.0.1:{port}/dailymed")
    monkeypatch.setattr(http, "BACKOFF_S", 0.01)
    with pytest.raises(SystemExit) as exit_info:
        download.main(["dailymed", "--limit", "1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: dailymed: the service could not be reached")


def test_retry_after_is_honoured(tmp_path, serve):
    """A 429 with Retry-After: 1 is waited out (not the 0.01 s backoff), then the request goes through."""
    answered: list[int] = []

    def busy_once(handler):
        if handler.path.startswith("/dailymed/spls.json") and not answered:
            answered.append(429)
            return send(handler, 429, b"slow down", {"Retry-After": "1"})
        return _route(handler)

    seen = serve(busy_once)
    start = time.monotonic()
    download.main(["dailymed", "--limit", "1", "--out", str(tmp_path), "--delay", "0"])
    assert answered == [429] and time.monotonic() - start >= 1.0
    assert sum(r.path.startswith("/dailymed/spls.json") for r in seen) == 2
    assert len(list(tmp_path.glob("*.xml"))) == 1


def test_server_errors_are_retried_then_reported(tmp_path, serve, capsys):
    seen = serve(lambda handler: send(handler, 503, b"down"))
    with pytest.raises(SystemExit) as exit_info:
        download.main(["cima", "--limit", "1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert len(seen) == http.RETRIES + 1  # the first attempt and every retry
    assert capsys.readouterr().err.startswith("error: cima: the service answered 503")
