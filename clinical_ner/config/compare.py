"""What makes two runs' configs the same computation: one definition for sweep skips, resumes, folder names
and report cells.

Keys that only change how a run is watched (logger, threads, progress bar, logging interval), where it writes
(output_dir, cache_dir, ckpt_path, committed_dir) or how reruns treat finished cells (sweep) are left out;
everything else in the resolved config counts.

Folder names of sweep cells: `conf/experiment/paper_grid.yaml` names a cell
`<scale>/<approach>/<model>-<corpus>[-<tag>]-s<seed>`, where the tag is `${override_tag:${hydra.overrides.task}}`:
empty for the grid's own coordinates, else a short hash of the other command-line overrides (ablations such as
`approach.decoding=constrained` or `optim.lr=2e-4`), so two settings never share a folder and a rerun of the
same setting finds its folder again. Overrides of keys that do not count (above) leave the name alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import OmegaConf

from clinical_ner.files.digests import json_digest

# top-level keys that change how a run is watched or where it writes, not what it computes
NOT_RESULTS = ("output_dir", "cache_dir", "ckpt_path", "committed_dir", "logger", "sweep")
NOT_RESULTS_TRAINER = ("enable_progress_bar", "threads", "log_every_n_steps")


def comparable(config: Mapping[str, Any], approach_keys: set[str] | None = None) -> dict[str, Any]:
    """The part of a resolved config (a plain dict) that decides what a run computes; with `approach_keys`,
    only those keys of `approach` (the rest belongs to another approach's settings)."""
    kept = {k: v for k, v in config.items() if k not in NOT_RESULTS}
    trainer = kept.get("trainer")
    if isinstance(trainer, Mapping):
        kept["trainer"] = {k: v for k, v in trainer.items() if k not in NOT_RESULTS_TRAINER}
    approach = kept.get("approach")
    if approach_keys is not None and isinstance(approach, Mapping):
        kept["approach"] = {k: v for k, v in approach.items() if k in approach_keys}
    return kept


def recorded_comparable(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The comparable part of a recorded config `old`, seen with the approach keys of `new`: records written
    before each approach had its own schema also hold the other approach's (unused) settings."""
    return comparable(old, approach_keys=set(new.get("approach", {})))


def same_config(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a run recorded with config `old` computed what `new` asks for."""
    return recorded_comparable(old, new) == comparable(new)


def config_hash(config: Mapping[str, Any]) -> str:
    """A stable digest of `comparable(config)` (hex, 16 characters)."""
    return json_digest(comparable(config))[:16]


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a.b.c": value} for every leaf of a nested mapping (lists are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two flat configs (`flatten`), sorted."""
    return sorted(key for key in old.keys() | new.keys() if old.get(key, _ABSENT) != new.get(key, _ABSENT))


def show_value(value: Any) -> str:
    """A config value as it would be typed on the command line (compact JSON for lists and null)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


_ABSENT = object()

# already in the folder name (or naming the sweep itself)
FOLDER_COORDINATES = ("approach", "model", "corpus", "scale", "seed", "experiment")
_IGNORED = (*FOLDER_COORDINATES, *(f"trainer.{key}" for key in NOT_RESULTS_TRAINER))


def override_key(override: str) -> str:
    """The key an override sets: `+a.b=1` -> `a.b`, `model=llama2` -> `model`, `~x` -> `x`."""
    return override.split("=", 1)[0].lstrip("+~").strip()


def counts(key: str) -> bool:
    """Whether an override of `key` changes what a cell computes beyond its folder coordinates."""
    if key in _IGNORED:
        return False
    return not any(key == top or key.startswith(f"{top}.") for top in NOT_RESULTS)


def override_tag(overrides: Iterable[str] | None) -> str:
    """ "" when no override beyond the coordinates counts, else "-" + 8 hex digits of their sorted text."""
    kept = sorted(str(o) for o in overrides or () if counts(override_key(str(o))))
    if not kept:
        return ""
    return "-" + hashlib.sha256("\n".join(kept).encode("utf-8")).hexdigest()[:8]


def register_resolvers() -> None:
    """Make `${override_tag:...}` available to the configs (idempotent)."""
    if not OmegaConf.has_resolver("override_tag"):
        OmegaConf.register_new_resolver("override_tag", override_tag)
