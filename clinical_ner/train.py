"""Hydra entry point: `python -m clinical_ner.train approach=tokencls model=llama2 corpus=none`.

Composes the config (validated against clinical_ner/config.py), runs the stages, and writes `results.json`
in the run folder, `status: failed` with the error line when something goes wrong.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from clinical_ner import config as _schema  # noqa: F401  (registers the structured config)
from clinical_ner.errors import EXIT_USER_ERROR, UserError
from clinical_ner.results import write_results

log = logging.getLogger(__name__)
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
SECRET_MARKERS = ("key", "token", "secret", "password")


def public_config(cfg: DictConfig) -> dict:
    """The resolved config with anything that looks like a secret removed (it is saved and logged)."""
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)

    def scrub(node):
        if isinstance(node, dict):
            return {
                k: scrub(v) for k, v in node.items() if not any(m in str(k).lower() for m in SECRET_MARKERS)
            }
        return [scrub(v) for v in node] if isinstance(node, list) else node

    return scrub(resolved)


def run(cfg: DictConfig) -> dict:
    """Run the configured approach and return the full results record."""
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    if cfg.approach.name not in ("tokencls", "seq2seq"):
        raise UserError(f"unknown approach={cfg.approach.name}; expected tokencls or seq2seq")
    pretrain, init_from = None, None
    if cfg.corpus.name != "none":
        from clinical_ner.tasks.pretrain_run import run_pretrain

        outcome = run_pretrain(cfg, run_dir)
        pretrain, init_from = outcome.section, outcome.weights
    # seeded after pretraining, so fine-tuning is the same whether the weights were trained or cached
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.approach.name == "seq2seq":
        from clinical_ner.tasks.seq2seq_run import run_seq2seq as run_stage
    else:
        from clinical_ner.tasks.tokencls_run import run_tokencls as run_stage
    sections = run_stage(cfg, run_dir, init_from=init_from)
    return {"status": "complete", **coordinates(cfg), **sections, "pretrain": pretrain}


def coordinates(cfg: DictConfig) -> dict:
    """Where a run sits in the grid, plus its resolved config."""
    return {
        "approach": cfg.approach.name,
        "model": cfg.model.family,
        "corpus": cfg.corpus.name,
        "scale": cfg.scale.name,
        "seed": cfg.seed,
        "config": public_config(cfg),
    }


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Run one job; a user mistake ends it with one line and exit code 2, never a traceback."""
    run_dir = Path(cfg.output_dir)
    try:
        results = run(cfg)
    except UserError as err:
        write_results(run_dir, {"status": "failed", "error": str(err), **coordinates(cfg)})
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Exception as err:
        write_results(
            run_dir, {"status": "failed", "error": f"{type(err).__name__}: {err}", **coordinates(cfg)}
        )
        raise
    path = write_results(run_dir, results)
    test = results.get("test", {})
    log.info(
        "test F1 %.4f (P %.4f R %.4f) -> %s",
        test.get("f1", 0),
        test.get("precision", 0),
        test.get("recall", 0),
        path,
    )
    print(f"results: {path}")
    return test.get("f1")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
