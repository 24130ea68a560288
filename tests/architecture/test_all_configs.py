"""Every config file under conf/ composes (its group option selected, the schema validated), `debug=fdr` runs
every approach end to end, `debug=overfit` runs, and every experiment runs as a sweep for a few steps, all on
the synthetic corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from composing import NANO, compose_train

from clinical_ner.run.pipeline import run

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
FILES = sorted(p.relative_to(CONF) for p in CONF.rglob("*.yaml") if p.parent != CONF)
SMALL = [
    "data=synthetic",
    "trainer.threads=1",
    "trainer.enable_progress_bar=false",
    *NANO,
]


def selection(path: Path) -> tuple[str, list[str]]:
    """The group a file belongs to and the overrides that select it (with the approach/scale it is made for,
    where the defaults pick it automatically)."""
    group, name = path.parent.as_posix(), path.stem
    if group == "prompt":
        return group, ["approach=seq2seq", f"prompt@approach.prompt={name}"]
    if group == "recipe":  # selected automatically: ${approach}_${scale}
        approach, scale = name.split("_")
        return group, [f"approach={approach}", f"scale={scale}"]
    if group == "debug_approach":  # selected automatically: ${debug}_${approach}
        debug, approach = name.split("_")
        return group, [f"debug={debug}", f"approach={approach}"]
    if group == "experiment_approach":  # selected automatically: ${experiment}_${approach}
        experiment, approach = name.split("_")
        return group, [f"experiment={experiment}", f"approach={approach}"]
    if group == "pretrain":  # selected automatically: ${scale}
        return group, [f"scale={name}"]
    if group == "budget" and name != "full":  # <approach>_grid_<scale>
        approach, _, scale = name.split("_")
        return group, [f"approach={approach}", f"scale={scale}", f"budget={name}"]
    return group, [f"{group}={name}"]


@pytest.mark.parametrize("path", FILES, ids=str)
def test_every_config_file_composes(path: Path) -> None:
    group, overrides = selection(path)
    cfg = compose_train(["output_dir=/tmp/x", *overrides], hydra=True)
    choices = cfg.hydra.runtime.choices
    key = "prompt@approach.prompt" if group == "prompt" else group
    assert choices[key] == path.stem, dict(choices)


def test_every_group_is_covered() -> None:
    """A new group gets a selection rule above (or is a plain `group=name` one) and is composed."""
    groups = {p.parent.as_posix() for p in FILES}
    expected = {
        "approach",
        "budget",
        "corpus",
        "data",
        "debug",
        "debug_approach",
        "experiment",
        "experiment_approach",
        "hydra/launcher",
    }
    expected |= {"logger"}
    expected |= {"model", "pretrain", "prompt", "quantization", "recipe", "scale", "trainer"}
    assert groups == expected


def compose_run(tmp_path: Path, *overrides: str):
    return compose_train(
        [*SMALL, f"output_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}", *overrides]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "approach,corpus", [("tokencls", "none"), ("seq2seq", "none"), ("tokencls", "es")], ids=str
)
def test_fast_dev_run_works_for_every_approach(tmp_path, approach, corpus) -> None:
    from test_pretrain import write_corpora

    corpora = write_corpora(tmp_path / "corpora")
    cfg = compose_run(
        tmp_path, "debug=fdr", f"approach={approach}", f"corpus={corpus}", f"corpus.root={corpora}"
    )
    assert cfg.logger.name == "none" and cfg.trainer.fast_dev_run == 2
    results = run(cfg)
    assert results["status"] == "complete" and results["train"]["steps"] == 2
    assert len(results["test"]["per_document"]) == 2  # data.eval_limit
    if corpus != "none":
        assert results["pretrain"]["epochs"] == 1 and results["pretrain"]["tokens"] <= 4096
    folder = tmp_path / "run"
    assert not list(folder.glob("checkpoints/*.ckpt")) and not (folder / "model").exists()
    assert not (folder / "wandb").exists() and not (folder / "csv").exists()


@pytest.mark.slow
def test_overfit_runs_many_epochs_on_a_few_batches(tmp_path) -> None:
    results = run(compose_run(tmp_path, "debug=overfit"))
    assert results["status"] == "complete"
    train = results["train"]
    assert train["epochs"] == 100 and train["steps"] <= 2 * 100  # 2 documents: one or two batches an epoch


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_as_a_sweep_for_a_few_steps(tmp_path, experiment) -> None:
    """The experiment's sweep (folder, sweeper, budgets), narrowed to the tiny Llama 2 without pretraining and
    one seed, every approach, as fast dev runs (the experiments' real weights have smoke tests of their own)."""
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "clinical_ner.train",
        "-m",
        f"experiment={experiment}",
        "debug=fdr",
        "model=llama2",
        "scale=tiny",
        "corpus=none",
        "seed=42",
        "approach=tokencls,seq2seq",
        *SMALL,
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "CLINICAL_NER_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads(p.read_text()) for p in sorted(sweep.rglob("results.json"))]
    assert sorted(r["approach"] for r in results) == ["seq2seq", "tokencls"]
    assert all(r["status"] == "complete" for r in results), results
    assert "2 complete, 0 failed" in done.stdout
