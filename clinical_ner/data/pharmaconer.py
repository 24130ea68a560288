"""Find the PharmaCoNER corpus: explicit folder, env var, verified cache, or the official Zenodo release.

The release zip holds more than we need (a background set, subtrack-2 TSVs); only the subtrack-1 BRAT files of
train/dev/test are unpacked, into `<dir>/{train,dev,test}/`, with a `manifest.json` (sizes + sha256) that later
calls check before trusting the folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import requests
from filelock import FileLock

from clinical_ner.data import http
from clinical_ner.errors import UserError, cli
from clinical_ner.files.atomic import atomic_write_json
from clinical_ner.files.digests import file_digest

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
ENV_VAR = "PHARMACONER_DIR"
CACHE_SUBDIR = "pharmaconer"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1

ZENODO_RECORD_URL = "https://zenodo.org/records/4270158"
RELEASE_FILENAME = "pharmaconer.zip"
RELEASE_URL = f"{ZENODO_RECORD_URL}/files/{RELEASE_FILENAME}?download=1"
RECORD_API_URL = "https://zenodo.org/api/records/4270158"
# The md5 of pharmaconer.zip (version 1.1), pinned so that the download is checked against a value that does not
# come from the server it downloads from. None: not yet recorded (this project's machines cannot reach Zenodo);
# until it is, the md5 that Zenodo's record API publishes is used, with a warning.
RELEASE_MD5: str | None = None

# The subtrack-1 folder of each split inside the release, matched as a path suffix (any top-level folder above).
RELEASE_FOLDERS = {
    "train": ("train-set_1.1", "train", "subtrack1"),
    "dev": ("dev-set_1.1", "dev", "subtrack1"),
    "test": ("test-set_1.1", "test", "subtrack1"),
}
BRAT_SUFFIXES = (".txt", ".ann")
_CHUNK = 1 << 20


def locate_corpus(root: str | Path | None, cache_dir: Path, download: bool) -> Path:
    """Return a folder with `train/ dev/ test/`: `root`, else $PHARMACONER_DIR, else the cache, else a download.

    The cache (`cache_dir/pharmaconer/`) is used only when its manifest verifies; a corrupt one is rebuilt when
    `download` is true and reported otherwise. Raises UserError (one line) when no source is available.
    """
    if root is not None and str(root) != "":
        return _check_split_folders(Path(root).expanduser(), "data.root")
    env_root = os.environ.get(ENV_VAR, "")
    if env_root:
        return _check_split_folders(Path(env_root).expanduser(), ENV_VAR)

    cache_dir = Path(cache_dir).expanduser()
    cached = cache_dir / CACHE_SUBDIR
    if not download and not cached.exists():
        raise UserError(
            "PharmaCoNER corpus not found: pass data.root=DIR (a folder with train/ dev/ test/), "
            f"or set {ENV_VAR}=DIR, or pass data.download=true to fetch the official release "
            f"({ZENODO_RECORD_URL}) into {cached}"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Several processes (e.g. one per GPU) may start at once: only one of them downloads, the others wait.
    with FileLock(str(cache_dir / f".{CACHE_SUBDIR}.lock")):
        problem = manifest_problem(cached) if cached.exists() else "absent"
        if problem is None:
            return cached
        if not download:
            raise UserError(
                f"the cached PharmaCoNER corpus at {cached} fails verification ({problem}); "
                "delete it, or rerun with data.download=true to rebuild it"
            )
        if problem != "absent":
            log.warning("cached corpus at %s is not usable (%s): rebuilding it", cached, problem)
        return fetch_corpus(cached)


def _check_split_folders(root: Path, origin: str) -> Path:
    """Return `root` if it holds the three split folders; otherwise say which are missing."""
    if not root.is_dir():
        raise UserError(f"{origin}={root} is not a folder (expected one with train/ dev/ test/ inside)")
    missing = [f"{split}/" for split in SPLITS if not (root / split).is_dir()]
    if missing:
        raise UserError(
            f"{origin}={root} has no {', '.join(missing)} folder (expected train/ dev/ test/ inside)"
        )
    return root


def fetch_corpus(out_dir: Path, url: str = RELEASE_URL, expected_md5: str | None = None) -> Path:
    """Download the release and unpack its subtrack-1 train/dev/test into `out_dir`; the zip is not kept."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # beside out_dir rather than in a scratch folder: an interrupted download resumes from its .part next time
    zip_path = download_release(out_dir.parent / f".{out_dir.name}-{RELEASE_FILENAME}", url, expected_md5)
    try:
        return unpack_release(zip_path, out_dir)
    finally:
        zip_path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- download


def md5_of(path: Path) -> str:
    """Hex md5 of a file (what Zenodo publishes)."""
    return file_digest(path, "md5")


def _normalise_md5(value: str) -> str:
    """Accept Zenodo's `md5:<hex>` form as well as bare hex, any case."""
    value = value.strip().lower()
    return value.removeprefix("md5:")


def verify_md5(path: Path, expected: str) -> str:
    """Return the file's md5 if it equals `expected` (`<hex>` or `md5:<hex>`); raise UserError otherwise."""
    actual = md5_of(path)
    if actual != _normalise_md5(expected):
        raise UserError(f"md5 mismatch for {path}: expected {_normalise_md5(expected)}, got {actual}")
    return actual


def md5_from_record(record: dict, filename: str = RELEASE_FILENAME) -> str:
    """The md5 that a Zenodo record (JSON of /api/records/<id>) publishes for `filename`."""
    files = record.get("files", [])
    # Newer API versions nest the list under "entries".
    if isinstance(files, dict):
        files = files.get("entries", [])
        files = list(files.values()) if isinstance(files, dict) else files
    for entry in files:
        if entry.get("key", entry.get("filename")) == filename:
            checksum = str(entry.get("checksum", ""))
            if checksum.lower().startswith("md5:") or (len(checksum) == 32 and ":" not in checksum):
                return _normalise_md5(checksum)
            raise UserError(f"Zenodo lists {filename} with no md5 checksum (got {checksum!r})")
    raise UserError(f"Zenodo record has no file named {filename}")


def fetch_release_md5(api_url: str = RECORD_API_URL, filename: str = RELEASE_FILENAME) -> str:
    """Ask Zenodo's record API for the md5 of the release file (only while no md5 is pinned)."""
    try:
        record = http.get(http.session(), api_url).json()
    except (http.DownloadError, requests.RequestException, ValueError) as err:
        raise UserError(f"could not read the release checksum from {api_url}: {err}") from err
    return md5_from_record(record, filename)


def download_release(dest: Path, url: str = RELEASE_URL, expected_md5: str | None = None) -> Path:
    """Download `url` to the file `dest`, checked against `expected_md5` (default: the pinned `RELEASE_MD5`);
    return `dest`. The bytes stream into `dest.part`: a transfer that fails (after the retries) leaves it for
    the next call to resume; a wrong md5 removes it. An existing `dest` with the right md5 is reused."""
    dest = Path(dest)
    if expected_md5 or RELEASE_MD5:
        expected = _normalise_md5(expected_md5 or RELEASE_MD5)
    else:
        log.warning("no pinned md5 for %s: checking it against the md5 Zenodo publishes", RELEASE_FILENAME)
        expected = fetch_release_md5()
    if dest.is_file() and md5_of(dest) == expected:
        return dest
    part = dest.with_name(dest.name + ".part")
    log.info("downloading %s", url)
    try:
        http.download_file(http.session(), url, part, desc=RELEASE_FILENAME)
    except http.DownloadError as err:
        raise UserError(f"could not download {url} ({err}); run again to resume") from None
    actual = md5_of(part)
    if actual != expected:
        part.unlink()
        raise UserError(f"md5 mismatch for {url}: expected {expected}, got {actual}")
    os.replace(part, dest)
    return dest


# ------------------------------------------------------------------------------------------------ unpack


def _member_path(name: str, zip_path: Path) -> PurePosixPath:
    """A zip member's path, refusing absolute paths, drive letters and `..` (zip-slip)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise UserError(f"refusing to unpack {zip_path}: unsafe member path {name!r}")
    return path


def _split_members(archive: zipfile.ZipFile, zip_path: Path) -> dict[str, dict[str, zipfile.ZipInfo]]:
    """Map each split to its subtrack-1 `.txt`/`.ann` members (file name -> member), found by folder suffix."""
    by_folder: dict[str, dict[PurePosixPath, dict[str, zipfile.ZipInfo]]] = {split: {} for split in SPLITS}
    for info in archive.infolist():
        path = _member_path(info.filename, zip_path)
        # macOS resource forks mirror the real tree under __MACOSX/ and as ._ files: never data.
        if info.is_dir() or "__MACOSX" in path.parts or path.name.startswith("._"):
            continue
        if path.suffix not in BRAT_SUFFIXES:
            continue
        folder = path.parent
        for split, suffix in RELEASE_FOLDERS.items():
            # The last two parts (e.g. train/subtrack1) suffice; the versioned folder name may change.
            if folder.parts[-2:] == suffix[-2:]:
                by_folder[split].setdefault(folder, {})[path.name] = info
    members: dict[str, dict[str, zipfile.ZipInfo]] = {}
    for split, folders in by_folder.items():
        if len(folders) > 1:
            # Several candidates: keep the one with the full official suffix, if that is unique.
            folders = {f: m for f, m in folders.items() if f.parts[-3:] == RELEASE_FOLDERS[split]}
        if len(folders) != 1:
            found = "none" if not folders else ", ".join(sorted(str(f) for f in folders))
            raise UserError(
                f"{zip_path} is not the PharmaCoNER release: need one "
                f"'{'/'.join(RELEASE_FOLDERS[split])}' folder of .txt/.ann files, found {found}"
            )
        members[split] = next(iter(folders.values()))
    return members


def _check_pairs(split: str, names: set[str], zip_path: Path) -> None:
    """Every document must come as a .txt + .ann pair (an empty .ann is fine)."""
    stems = {Path(name).stem for name in names}
    unpaired = sorted(
        f"{stem}{ext}" for stem in stems for ext in BRAT_SUFFIXES if f"{stem}{ext}" not in names
    )
    if unpaired:
        raise UserError(f"{zip_path}: {split} documents lack their pair file: {', '.join(unpaired[:5])}")


def unpack_release(zip_path: Path, out_dir: Path) -> Path:
    """Unpack the release's subtrack-1 train/dev/test `.txt`/`.ann` into `out_dir/{split}/`; return `out_dir`.

    Everything else (background set, subtrack-2 files) is ignored. The folder is built in a temporary sibling
    with its manifest and renamed into place, so `out_dir` is never half-written; an old `out_dir` is replaced.
    """
    zip_path, out_dir = Path(zip_path), Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.unpack-"))
    try:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                members = _split_members(archive, zip_path)
                for split, files in members.items():
                    _check_pairs(split, set(files), zip_path)
                    (staging / split).mkdir()
                    for name, info in files.items():
                        with archive.open(info) as source, open(staging / split / name, "wb") as target:
                            shutil.copyfileobj(source, target, _CHUNK)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
            raise UserError(f"{zip_path} is not a readable zip file: {err}") from err
        write_manifest(staging, source=zip_path.name)
        _replace_dir(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir


def _replace_dir(new: Path, final: Path) -> None:
    """Move `new` to `final`, moving an existing `final` aside first and deleting it afterwards."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
        os.replace(final, old / final.name)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old)


# ---------------------------------------------------------------------------------------------- manifest


def build_manifest(folder: Path, source: str = "") -> dict:
    """Describe `folder/{train,dev,test}`: per split, document count and each file's size and sha256."""
    splits = {}
    for split in SPLITS:
        paths = sorted(p for p in (folder / split).iterdir() if p.suffix in BRAT_SUFFIXES and p.is_file())
        files = {p.name: {"size": p.stat().st_size, "sha256": file_digest(p)} for p in paths}
        documents = sum(1 for p in paths if p.suffix == ".txt")
        splits[split] = {"documents": documents, "file_count": len(files), "files": files}
    return {"format": MANIFEST_FORMAT, "source": source, "splits": splits}


def write_manifest(folder: Path, source: str = "") -> Path:
    """Write `folder/manifest.json` (see `build_manifest`) atomically; return its path."""
    path = Path(folder) / MANIFEST_NAME
    atomic_write_json(path, build_manifest(Path(folder), source))
    return path


def manifest_problem(folder: Path) -> str | None:
    """None if `folder` matches its manifest exactly (same files, sizes, sha256); else a short reason."""
    path = Path(folder) / MANIFEST_NAME
    try:
        recorded = json.loads(path.read_text("utf-8"))
        recorded_splits = recorded["splits"]
    except FileNotFoundError:
        return f"no {MANIFEST_NAME}"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable {MANIFEST_NAME}: {err}"
    if recorded.get("format") != MANIFEST_FORMAT:
        return f"{MANIFEST_NAME} has format {recorded.get('format')!r}, expected {MANIFEST_FORMAT}"
    for split in SPLITS:
        if not (Path(folder) / split).is_dir():
            return f"missing {split}/"
    actual = build_manifest(Path(folder))["splits"]
    for split in SPLITS:
        want = recorded_splits.get(split, {}).get("files", {})
        have = actual[split]["files"]
        for name in sorted(set(want) | set(have)):
            if name not in have:
                return f"missing {split}/{name}"
            if name not in want:
                return f"unexpected {split}/{name}"
            if have[name] != want[name]:
                return f"{split}/{name} changed (size or sha256 differs)"
    return None


# ------------------------------------------------------------------------------------------------- CLI


@cli
def main(argv: list[str] | None = None) -> None:
    """Download the official release and unpack train/dev/test into --out."""
    parser = argparse.ArgumentParser(
        prog="python -m clinical_ner.data.pharmaconer",
        description=f"Download PharmaCoNER ({ZENODO_RECORD_URL}) and unpack subtrack-1 train/dev/test BRAT files.",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="folder to create, with train/ dev/ test/ inside"
    )
    parser.add_argument(
        "--url", default=RELEASE_URL, help="release URL (a mirror, or file:// of a local zip)"
    )
    parser.add_argument("--md5", default=None, help="expected md5 (default: the pinned release md5)")
    parser.add_argument("--force", action="store_true", help="re-download even if --out already verifies")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out.expanduser()
    if not args.force and out.exists() and manifest_problem(out) is None:
        print(f"{out} already holds a verified corpus; set {ENV_VAR}={out.resolve()}")
        return
    fetch_corpus(out, url=args.url, expected_md5=args.md5)
    print(f"PharmaCoNER train/dev/test unpacked into {out}; set {ENV_VAR}={out.resolve()}")


if __name__ == "__main__":
    main()
