"""Locating, downloading and unpacking PharmaCoNER, all offline (a fake release zip, file:// URLs, a local
HTTP server for resumed and retried transfers)."""

from __future__ import annotations

import hashlib
import json
import random
import zipfile
from pathlib import Path

import pytest
import requests
from local_server import local_server, send

from clinical_ner.data import pharmaconer
from clinical_ner.data.pharmaconer import (
    download_release,
    fetch_release_md5,
    locate_corpus,
    main,
    manifest_problem,
    md5_from_record,
    unpack_release,
    verify_md5,
)
from clinical_ner.errors import EXIT_USER_ERROR, UserError

SPLIT_FOLDERS = {"train": "train-set_1.1/train", "dev": "dev-set_1.1/dev", "test": "test-set_1.1/test"}
DOCS = {split: [f"S0000-{split}-{i}" for i in range(2)] for split in SPLIT_FOLDERS}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Fail any test that would reach the network; the local test server is fine."""
    real_send = requests.adapters.HTTPAdapter.send

    def guarded(adapter, request, *args, **kwargs):
        assert request.url.startswith("http://127.0.0.1:"), f"test tried to reach the network: {request.url}"
        return real_send(adapter, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", guarded)
    monkeypatch.setattr(pharmaconer.http, "BACKOFF_S", 0.01)
    monkeypatch.delenv(pharmaconer.ENV_VAR, raising=False)


def _doc_text(doc_id: str) -> str:
    return f"Caso {doc_id}: tratamiento con ácido fólico.\n"


def make_release_zip(
    path: Path, top: str = "pharmaconer", extra: dict[str, str | bytes] | None = None
) -> Path:
    """A tiny zip with the official layout, plus files that must be ignored."""
    prefix = f"{top}/" if top else ""
    with zipfile.ZipFile(path, "w") as archive:
        for split, folder in SPLIT_FOLDERS.items():
            for index, doc_id in enumerate(DOCS[split]):
                text = _doc_text(doc_id)
                start = text.index("ácido")
                # The second document of each split has no mention: an empty .ann, as in the real corpus.
                ann = f"T1\tNORMALIZABLES {start} {start + 11}\tácido fólico\n" if index == 0 else ""
                archive.writestr(f"{prefix}{folder}/subtrack1/{doc_id}.txt", text)
                archive.writestr(f"{prefix}{folder}/subtrack1/{doc_id}.ann", ann)
            archive.writestr(f"{prefix}{folder}/subtrack2/{split}.tsv", "S0000\tfoo\t123\n")
            archive.writestr(f"{prefix}{folder}/subtrack1/README.md", "not a document\n")
        archive.writestr(f"{prefix}background-set_1.1/background/S9999-bg.txt", "fondo\n")
        archive.writestr(f"{prefix}background-set_1.1/background/S9999-bg.ann", "")
        archive.writestr(f"__MACOSX/{prefix}train-set_1.1/train/subtrack1/._{DOCS['train'][0]}.txt", "\0\1")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _make_corpus(root: Path) -> Path:
    for split in SPLIT_FOLDERS:
        (root / split).mkdir(parents=True)
    return root


# ------------------------------------------------------------------------------------------------ unpack


@pytest.mark.parametrize("top", ["pharmaconer", "", "a/b"])
def test_unpack_keeps_only_subtrack1_brat_files(tmp_path, top):
    zip_path = make_release_zip(tmp_path / "release.zip", top=top)
    out = unpack_release(zip_path, tmp_path / "corpus")
    assert out == tmp_path / "corpus"
    assert sorted(p.name for p in out.iterdir()) == ["dev", "manifest.json", "test", "train"]
    for split in SPLIT_FOLDERS:
        expected = sorted(f"{doc}{ext}" for doc in DOCS[split] for ext in (".txt", ".ann"))
        assert sorted(p.name for p in (out / split).iterdir()) == expected
        doc = DOCS[split][0]
        assert (out / split / f"{doc}.txt").read_text("utf-8") == _doc_text(doc)
    # No staging or scratch folders are left next to the result.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "release.zip"]


def test_manifest_records_files_and_verifies(tmp_path):
    out = unpack_release(make_release_zip(tmp_path / "release.zip"), tmp_path / "corpus")
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    train = manifest["splits"]["train"]
    assert train["documents"] == 2 and train["file_count"] == 4
    name = f"{DOCS['train'][0]}.txt"
    data = (out / "train" / name).read_bytes()
    assert train["files"][name] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert manifest_problem(out) is None


def test_manifest_detects_changed_missing_and_extra_files(tmp_path):
    out = unpack_release(make_release_zip(tmp_path / "release.zip"), tmp_path / "corpus")
    txt = out / "dev" / f"{DOCS['dev'][0]}.txt"
    original = txt.read_bytes()
    txt.write_bytes(original.replace(b"Caso", b"CASO"))
    assert "changed" in manifest_problem(out)
    txt.unlink()
    assert "missing" in manifest_problem(out)
    txt.write_bytes(original)
    (out / "test" / "intruso.ann").write_text("")
    assert "unexpected" in manifest_problem(out)
    (out / "test" / "intruso.ann").unlink()
    assert manifest_problem(out) is None
    (out / "manifest.json").write_text("{not json")
    assert "unreadable" in manifest_problem(out)


def test_unpack_replaces_an_old_folder(tmp_path):
    out = tmp_path / "corpus"
    (out / "train").mkdir(parents=True)
    (out / "train" / "stale.txt").write_text("old")
    unpack_release(make_release_zip(tmp_path / "release.zip"), out)
    assert not (out / "train" / "stale.txt").exists()
    assert manifest_problem(out) is None


@pytest.mark.parametrize(
    "bad_name",
    [
        "../evil.txt",
        "pharmaconer/train-set_1.1/train/subtrack1/../../../../evil.ann",
        "/tmp/evil.txt",
        "..\\evil.txt",
        "C:/evil.txt",
    ],
)
def test_zip_slip_is_rejected_and_nothing_written(tmp_path, bad_name):
    zip_path = make_release_zip(tmp_path / "release.zip", extra={bad_name: "pwned"})
    with pytest.raises(UserError, match="unsafe member path"):
        unpack_release(zip_path, tmp_path / "work" / "corpus")
    assert list((tmp_path / "work").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_missing_split_folder_in_zip_is_reported(tmp_path):
    zip_path = tmp_path / "partial.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("train-set_1.1/train/subtrack1/a.txt", "a\n")
        archive.writestr("train-set_1.1/train/subtrack1/a.ann", "")
        archive.writestr("dev-set_1.1/dev/subtrack1/b.txt", "b\n")
        archive.writestr("dev-set_1.1/dev/subtrack1/b.ann", "")
    with pytest.raises(UserError, match="test-set_1.1/test/subtrack1"):
        unpack_release(zip_path, tmp_path / "corpus")
    assert not (tmp_path / "corpus").exists()


def test_unpaired_document_is_reported(tmp_path):
    zip_path = make_release_zip(
        tmp_path / "release.zip", extra={"pharmaconer/dev-set_1.1/dev/subtrack1/lonely.txt": "x\n"}
    )
    with pytest.raises(UserError, match=r"lonely\.ann"):
        unpack_release(zip_path, tmp_path / "corpus")


def test_not_a_zip_is_a_user_error(tmp_path):
    bogus = tmp_path / "release.zip"
    bogus.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(UserError, match="not a readable zip"):
        unpack_release(bogus, tmp_path / "corpus")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.zip"]


# ---------------------------------------------------------------------------------------------- download


def test_verify_md5(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hola")
    digest = hashlib.md5(b"hola").hexdigest()
    assert verify_md5(path, digest) == digest
    assert verify_md5(path, f"md5:{digest.upper()}") == digest
    with pytest.raises(UserError, match="md5 mismatch"):
        verify_md5(path, "0" * 32)


def test_download_release_from_file_url(tmp_path):
    source = make_release_zip(tmp_path / "source.zip")
    dest = tmp_path / "cache" / "pharmaconer.zip"
    result = download_release(dest, url=source.as_uri(), expected_md5=f"md5:{_md5(source)}")
    assert result == dest
    assert dest.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["pharmaconer.zip"]
    # A second call with a verified file in place reuses it.
    assert download_release(dest, url="file:///nonexistent.zip", expected_md5=_md5(source)) == dest


def test_download_release_md5_mismatch_leaves_nothing(tmp_path):
    source = make_release_zip(tmp_path / "source.zip")
    dest = tmp_path / "cache" / "pharmaconer.zip"
    with pytest.raises(UserError, match="md5 mismatch"):
        download_release(dest, url=source.as_uri(), expected_md5="0" * 32)
    assert list(dest.parent.iterdir()) == []


def test_download_release_unreachable_url_is_a_user_error(tmp_path):
    dest = tmp_path / "pharmaconer.zip"
    with pytest.raises(UserError, match="could not download"):
        download_release(dest, url=(tmp_path / "missing.zip").as_uri(), expected_md5="0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_md5_from_zenodo_record():
    record = {
        "files": [
            {"key": "other.zip", "checksum": "md5:" + "1" * 32},
            {"key": "pharmaconer.zip", "checksum": "md5:ABC" + "0" * 29},
        ]
    }
    assert md5_from_record(record) == "abc" + "0" * 29
    assert (
        md5_from_record(
            {
                "files": {
                    "entries": {"pharmaconer.zip": {"key": "pharmaconer.zip", "checksum": "md5:" + "2" * 32}}
                }
            }
        )
        == "2" * 32
    )
    with pytest.raises(UserError, match="no file named"):
        md5_from_record({"files": []})


def test_fetch_release_md5_reads_the_record_api():
    record = json.dumps({"files": [{"key": "pharmaconer.zip", "checksum": "md5:" + "a" * 32}]}).encode()

    def api(handler):
        send(handler, *((200, record) if handler.path == "/api/records/4270158" else (404, b"")))

    with local_server(api) as (base, _):
        assert fetch_release_md5(f"{base}/api/records/4270158") == "a" * 32
        with pytest.raises(UserError, match="could not read the release checksum"):
            fetch_release_md5(f"{base}/api/records/1")


def release_server(zip_bytes: bytes, cut_at: int | None = None, ranges: bool = True):
    """A server for the release at /pharmaconer.zip: the first answer stops after `cut_at` bytes (a dropped
    connection), later ones honour `Range` (206) unless `ranges` is false (200, everything again)."""
    answers: list[int] = []

    def answer(handler):
        wanted = handler.headers.get("Range")
        if cut_at is not None and not answers:
            answers.append(200)
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(zip_bytes)))
            handler.end_headers()
            handler.wfile.write(zip_bytes[:cut_at])
            handler.close_connection = True
            return
        if wanted and ranges:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            answers.append(206)
            end = len(zip_bytes) - 1
            headers = {"Content-Range": f"bytes {start}-{end}/{len(zip_bytes)}", "Accept-Ranges": "bytes"}
            return send(handler, 206, zip_bytes[start:], headers)
        answers.append(200)
        send(handler, 200, zip_bytes)

    return local_server(answer), answers


@pytest.mark.parametrize("ranges", [True, False], ids=["range", "no-range"])
def test_interrupted_download_resumes_where_the_server_allows(tmp_path, ranges):
    padding = random.Random(0).randbytes(400_000)  # incompressible: the zip spans several write chunks
    source = make_release_zip(tmp_path / "source.zip", extra={"pharmaconer/padding.bin": padding})
    data, cut = source.read_bytes(), 300_000
    dest = tmp_path / "cache" / "pharmaconer.zip"
    server, answers = release_server(data, cut_at=cut, ranges=ranges)
    with server as (base, seen):
        with pytest.raises(UserError, match="run again to resume"):
            download_release(dest, url=f"{base}/pharmaconer.zip", expected_md5=_md5(source))
        part = dest.with_name("pharmaconer.zip.part")
        kept = part.stat().st_size
        assert 0 < kept <= cut and part.read_bytes() == data[:kept]  # what arrived is kept
        assert download_release(dest, url=f"{base}/pharmaconer.zip", expected_md5=_md5(source)) == dest
    assert dest.read_bytes() == data and not part.exists()
    assert seen[1].headers.get("Range") == f"bytes={kept}-"
    assert answers == [200, 206 if ranges else 200]  # resumed, or started over when Range is not honoured


def test_pinned_md5_is_used_without_asking_the_server(tmp_path, monkeypatch):
    source = make_release_zip(tmp_path / "source.zip")
    monkeypatch.setattr(pharmaconer, "RELEASE_MD5", _md5(source))
    server, _ = release_server(source.read_bytes())
    with server as (base, seen):
        dest = download_release(tmp_path / "pharmaconer.zip", url=f"{base}/pharmaconer.zip")
    assert dest.read_bytes() == source.read_bytes()
    assert [r.path for r in seen] == ["/pharmaconer.zip"]  # no record API request
    monkeypatch.setattr(pharmaconer, "RELEASE_MD5", "0" * 32)
    server, _ = release_server(source.read_bytes())
    with server as (base, _), pytest.raises(UserError, match="md5 mismatch"):
        download_release(tmp_path / "other.zip", url=f"{base}/pharmaconer.zip")


# ------------------------------------------------------------------------------------------------ locate


@pytest.fixture
def fake_zenodo(tmp_path, monkeypatch):
    """Point the download path at a local release zip; returns a list recording each fetch."""
    (tmp_path / "zenodo").mkdir()
    source = make_release_zip(tmp_path / "zenodo" / "pharmaconer.zip")
    calls: list[Path] = []
    real_fetch = pharmaconer.fetch_corpus

    def fetch(out_dir, url=None, expected_md5=None):
        calls.append(out_dir)
        return real_fetch(out_dir, url=source.as_uri(), expected_md5=_md5(source))

    monkeypatch.setattr(pharmaconer, "fetch_corpus", fetch)
    return calls


def test_locate_explicit_root_wins(tmp_path, monkeypatch, fake_zenodo):
    root = _make_corpus(tmp_path / "root")
    monkeypatch.setenv("PHARMACONER_DIR", str(_make_corpus(tmp_path / "env")))
    unpack_release(make_release_zip(tmp_path / "r.zip"), tmp_path / "cache" / "pharmaconer")
    assert locate_corpus(str(root), tmp_path / "cache", download=True) == root
    assert fake_zenodo == []


def test_locate_env_var_before_cache(tmp_path, monkeypatch, fake_zenodo):
    env = _make_corpus(tmp_path / "env")
    monkeypatch.setenv("PHARMACONER_DIR", str(env))
    unpack_release(make_release_zip(tmp_path / "r.zip"), tmp_path / "cache" / "pharmaconer")
    assert locate_corpus(None, tmp_path / "cache", download=True) == env
    assert fake_zenodo == []


def test_locate_verified_cache_before_download(tmp_path, fake_zenodo):
    cached = unpack_release(make_release_zip(tmp_path / "r.zip"), tmp_path / "cache" / "pharmaconer")
    assert locate_corpus(None, tmp_path / "cache", download=True) == cached
    assert locate_corpus(None, tmp_path / "cache", download=False) == cached
    assert fake_zenodo == []


def test_locate_downloads_when_allowed(tmp_path, fake_zenodo):
    cache = tmp_path / "cache"
    found = locate_corpus(None, cache, download=True)
    assert found == cache / "pharmaconer"
    assert fake_zenodo == [cache / "pharmaconer"]
    assert manifest_problem(found) is None
    assert sorted(p.name for p in (found / "train").iterdir()) == sorted(
        f"{d}{e}" for d in DOCS["train"] for e in (".txt", ".ann")
    )
    # No zip or scratch folder is kept in the cache, only the corpus (and the lock file).
    assert {p.name for p in cache.iterdir()} <= {"pharmaconer", ".pharmaconer.lock"}
    # Later calls use the verified cache.
    assert locate_corpus(None, cache, download=True) == found
    assert len(fake_zenodo) == 1


def test_locate_rebuilds_corrupt_cache_when_download_allowed(tmp_path, fake_zenodo):
    cached = unpack_release(make_release_zip(tmp_path / "r.zip"), tmp_path / "cache" / "pharmaconer")
    (cached / "dev" / f"{DOCS['dev'][0]}.ann").unlink()
    with pytest.raises(UserError, match="fails verification.*data.download=true"):
        locate_corpus(None, tmp_path / "cache", download=False)
    assert locate_corpus(None, tmp_path / "cache", download=True) == cached
    assert manifest_problem(cached) is None
    assert len(fake_zenodo) == 1


def test_locate_without_any_source_explains_all_three_ways(tmp_path, fake_zenodo):
    with pytest.raises(UserError) as info:
        locate_corpus(None, tmp_path / "cache", download=False)
    message = str(info.value)
    assert "\n" not in message
    for hint in ("data.root=", "PHARMACONER_DIR", "data.download=true", "https://zenodo.org/records/4270158"):
        assert hint in message
    assert fake_zenodo == []
    # Looking is side-effect free: no cache folder appears when nothing may be downloaded.
    assert not (tmp_path / "cache").exists()


def test_locate_root_missing_a_split_names_it(tmp_path):
    root = tmp_path / "root"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    with pytest.raises(UserError, match=r"data\.root=.* has no dev/ folder"):
        locate_corpus(root, tmp_path / "cache", download=True)


def test_locate_env_var_missing_a_split_names_it(tmp_path, monkeypatch):
    root = tmp_path / "env"
    (root / "dev").mkdir(parents=True)
    monkeypatch.setenv("PHARMACONER_DIR", str(root))
    with pytest.raises(UserError, match=r"PHARMACONER_DIR=.* has no train/, test/ folder"):
        locate_corpus(None, tmp_path / "cache", download=True)


def test_locate_nonexistent_root(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        locate_corpus(tmp_path / "nowhere", tmp_path / "cache", download=False)


# --------------------------------------------------------------------------------------------------- CLI


def test_cli_downloads_and_unpacks(tmp_path, capsys):
    source = make_release_zip(tmp_path / "source.zip")
    out = tmp_path / "corpus"
    main(["--out", str(out), "--url", source.as_uri(), "--md5", _md5(source)])
    assert manifest_problem(out) is None
    assert "PHARMACONER_DIR=" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "source.zip"]


def test_cli_bad_md5_exits_with_user_error(tmp_path, capsys):
    source = make_release_zip(tmp_path / "source.zip")
    with pytest.raises(SystemExit) as info:
        main(["--out", str(tmp_path / "corpus"), "--url", source.as_uri(), "--md5", "0" * 32])
    assert info.value.code == EXIT_USER_ERROR
    assert capsys.readouterr().err.startswith("error: md5 mismatch")
    assert not (tmp_path / "corpus").exists()
