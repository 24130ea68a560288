"""The paper grid as one sweep: budgets and folders compose, finished cells are skipped, interrupted ones resume,
a failing cell is recorded while the others complete, and every W&B run is finished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from composing import MICRO, compose_train

from clinical_ner.run.record.code_version import code_version
from clinical_ner.run.sweep import (
    finished_results,
    prepare_run_dir,
    record_checkpoint_config,
    resume_checkpoint,
    summarize,
    wandb_sync_hint,
)

CONF = Path(__file__).resolve().parents[2] / "conf"
ROOT = CONF.parent
SMALL = [*MICRO, "scale.vocab_size=600"]


def compose_grid(overrides: list[str]):
    return compose_train(["experiment=paper_grid", *overrides], hydra=True)


def test_paper_grid_sweeps_the_whole_study_into_a_stable_folder():
    cfg = compose_grid([])
    params = cfg.hydra.sweeper.params
    assert params.model.split(",") == ["llama2", "llama3", "llama3_1", "llama3_2"]
    assert params.corpus.split(",") == ["none", "es", "en", "bilingual"]
    assert params.approach.split(",") == ["tokencls", "seq2seq"]
    assert cfg.hydra.sweep.dir == "multirun/paper_grid"  # no timestamp: a rerun finds its cells
    assert cfg.logger.wandb.group == "paper_grid"


@pytest.mark.parametrize(("approach", "epochs"), [("tokencls", 2), ("seq2seq", 1)])
def test_grid_budget_follows_the_approach(approach, epochs):
    grid = compose_grid([f"approach={approach}"])
    assert grid.trainer.max_epochs == epochs
    single = compose_train([f"approach={approach}"])
    assert single.trainer.max_epochs > epochs  # a single run keeps the recipe's full budget


def _results(folder: Path, status: str, config: dict, code: dict | None = None) -> None:
    """A results record of this code (or of `code`)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"status": status, "config": config, "test": {"f1": 0.5}, "code": code or code_version()}
    (folder / "results.json").write_text(json.dumps(record))


def test_finished_results_need_a_complete_record_of_the_same_config(tmp_path):
    config = {"seed": 1, "trainer": {"max_epochs": 2, "threads": 2}, "logger": {"name": "csv"}}
    _results(tmp_path / "a", "complete", config)
    assert finished_results(tmp_path / "a", config)["test"]["f1"] == 0.5
    # how the run is watched does not matter; what it computes does
    watched = {**config, "trainer": {"max_epochs": 2, "threads": 1}, "logger": {"name": "wandb"}}
    assert finished_results(tmp_path / "a", watched) is not None
    assert finished_results(tmp_path / "a", {**config, "seed": 2}) is None
    _results(tmp_path / "b", "failed", config)
    assert finished_results(tmp_path / "b", config) is None
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text('{"status": "compl')  # torn write
    assert finished_results(tmp_path / "c", config) is None
    assert finished_results(tmp_path / "missing", config) is None
    assert resume_checkpoint(tmp_path / "a", config) is None
    (tmp_path / "a" / "checkpoints").mkdir()
    (tmp_path / "a" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resume_checkpoint(tmp_path / "a", config) is None  # written by an unknown config
    record_checkpoint_config(tmp_path / "a", config)
    assert resume_checkpoint(tmp_path / "a", watched) == tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert resume_checkpoint(tmp_path / "a", {**config, "seed": 2}) is None


def _leftovers(run: Path, config: dict, checkpoint_config: dict | None) -> None:
    """What an interrupted run leaves: a failed record, a checkpoint (of `checkpoint_config`), predictions."""
    _results(run, "failed", config)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "predictions").mkdir()
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")  # Hydra's, of the job now starting
    (run / "train.log").write_text("log of the job now starting\n")
    if checkpoint_config is not None:
        record_checkpoint_config(run, checkpoint_config)


def test_another_configs_checkpoint_is_moved_aside_and_never_resumed(tmp_path, caplog):
    old = {"seed": 1, "optim": {"lr": 0.001}, "trainer": {"threads": 2}}
    new = {"seed": 1, "optim": {"lr": 0.002}, "trainer": {"threads": 1}}
    run = tmp_path / "run"
    _leftovers(run, old, old)
    with caplog.at_level("WARNING"):
        assert prepare_run_dir(run, new) is None
    (stale,) = run.glob("stale-*")
    assert (stale / "checkpoints" / "last.ckpt").is_file() and (stale / "results.json").is_file()
    assert sorted(p.name for p in run.iterdir()) == [".hydra", stale.name, "train.log"]
    (line,) = [r.getMessage() for r in caplog.records if "rerun:" in r.getMessage()]
    assert "optim.lr 0.001 -> 0.002" in line and "training from scratch" in line and "threads" not in line
    # the sweep summary sees the cell as the job now starting (the stale record is out of the way)
    assert summarize(tmp_path) == {"complete": [], "failed": [], "unfinished": [run]}


def test_the_same_configs_checkpoint_resumes(tmp_path):
    config = {"seed": 1, "optim": {"lr": 0.001}, "trainer": {"threads": 2}}
    run = tmp_path / "run"
    _leftovers(run, config, {**config, "trainer": {"threads": 1}})
    assert prepare_run_dir(run, config) == run / "checkpoints" / "last.ckpt"
    assert not list(run.glob("stale-*"))


def test_checkpoints_of_an_unknown_config_are_moved_aside(tmp_path):
    config = {"seed": 1}
    run = tmp_path / "run"
    _leftovers(run, config, None)  # e.g. written before checkpoints.json existed
    assert (
        prepare_run_dir(run, config, writer=False) is None
    )  # ranks > 0: never resume, leave the move to rank 0
    assert not list(run.glob("stale-*"))
    assert prepare_run_dir(run, config) is None
    assert len(list(run.glob("stale-*/checkpoints/last.ckpt"))) == 1


def _grid_folder(overrides: list[str], experiment: str = "paper_grid") -> str:
    cfg = compose_train([f"experiment={experiment}", *overrides], hydra=True)
    return f"{cfg.hydra.sweep.dir}/{cfg.hydra.sweep.subdir}"


def test_grid_folders_name_every_coordinate_but_the_seed():
    tiny, paper = _grid_folder([]), _grid_folder(["scale=paper"])
    assert tiny == "multirun/paper_grid/tiny/tokencls/llama2-none-s42"
    assert paper == "multirun/paper_grid/paper/tokencls/llama2-none-s42"
    assert _grid_folder(["seed=43", "model=llama3"]) == "multirun/paper_grid/tiny/tokencls/llama3-none-s43"
    # how a run is watched does not move it; an ablation gets its own folder, stable across reruns
    watched = [
        "trainer.threads=1",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        "logger.wandb.mode=online",
    ]
    assert _grid_folder(watched) == tiny
    ablations = {
        _grid_folder([o]) for o in ["optim.lr=0.002", "approach.attention=causal", "data.eval_limit=20"]
    }
    assert len(ablations) == 3 and tiny not in ablations
    constrained = _grid_folder(["approach=seq2seq", "approach.decoding=constrained"])
    assert constrained.startswith("multirun/paper_grid/tiny/seq2seq/llama2-none-") and constrained.endswith(
        "-s42"
    )
    assert constrained == _grid_folder(["approach.decoding=constrained", "approach=seq2seq"])
    # the real-weights study too; its free-decoding cells get their own folders
    real = _grid_folder([], "study")
    assert real == "multirun/study/tokencls/smollm2-none-small-s42"
    assert _grid_folder(["optim.lr=0.002"], "study") != real
    free = _grid_folder(["approach=seq2seq", "approach.decoding=free"], "study")
    assert free.startswith("multirun/study/seq2seq/smollm2-none-small-") and free.endswith("-s42")


def test_wandb_sync_hint_globs_every_cell(tmp_path):
    assert wandb_sync_hint(tmp_path) is None
    for cell in ("tokencls/a", "seq2seq/b"):
        (tmp_path / cell / "wandb" / "offline-run-1").mkdir(parents=True)
    assert wandb_sync_hint(tmp_path) == f"wandb sync {tmp_path}/*/*/wandb/offline-run-*"


def _sweep(sweep_dir: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    """A two-cell grid on the synthetic corpus: corpus=none completes, corpus=es cannot find its corpus."""
    command = [
        sys.executable,
        "-m",
        "clinical_ner.train",
        "-m",
        "experiment=paper_grid",
        "model=llama2",
        "approach=tokencls",
        "corpus=none,es",
        f"corpus.root={sweep_dir}/no-such-corpus",
        "data=synthetic",
        "trainer.max_steps=3",
        "trainer.enable_progress_bar=false",
        "trainer.threads=1",
        *SMALL,
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]
    env = {**os.environ, "CLINICAL_NER_CACHE": str(cache), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("CLINICAL_NER_CORPORA", None)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_sweep_survives_a_failing_cell_skips_finished_ones_and_resumes(tmp_path):
    sweep_dir, cache = tmp_path / "sweep", tmp_path / "cache"
    first = _sweep(sweep_dir, cache)
    assert first.returncode == 0, first.stderr[-2000:]
    # the synthetic corpus and small sizes are overrides beyond the grid's coordinates: a hash names them
    (good,) = sweep_dir.glob("tiny/tokencls/llama2-none-*-s42")
    (bad,) = sweep_dir.glob("tiny/tokencls/llama2-es-*-s42")
    assert json.loads((good / "results.json").read_text())["status"] == "complete"
    failed = json.loads((bad / "results.json").read_text())
    assert failed["status"] == "failed" and "no-such-corpus" in failed["error"]
    assert "1 complete, 1 failed" in first.stdout
    assert "Traceback" not in first.stderr
    # one W&B offline run per started job, each finished with its exit code; tables hold ids and offsets only
    runs = list(good.glob("wandb/offline-run-*"))
    assert len(runs) == 1 and "got exitcode: 0" in (runs[0] / "logs" / "debug.log").read_text()
    (spans,) = runs[0].glob("files/media/table/test/spans*.table.json")
    assert json.loads(spans.read_text())["columns"] == ["document", "type", "start", "end"]
    assert "wandb sync" in first.stdout
    assert summarize(sweep_dir) == {"complete": [good], "failed": [bad], "unfinished": []}

    # the same command again: the finished cell is skipped, the failed one redone
    before = (good / "results.json").read_bytes()
    second = _sweep(sweep_dir, cache)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"skip: {good} is complete" in second.stdout
    assert (good / "results.json").read_bytes() == before

    # an interrupted cell (checkpoint, no results) resumes from its last checkpoint
    (good / "results.json").unlink()
    third = _sweep(sweep_dir, cache)
    assert third.returncode == 0, third.stderr[-2000:]
    assert "resuming" in (good / "train.log").read_text()
    assert json.loads((good / "results.json").read_text())["status"] == "complete"


def test_a_record_from_before_the_approach_schemas_still_counts_as_the_same_config(tmp_path):
    config = {"seed": 1, "trainer": {}, "approach": {"name": "seq2seq", "unit": "sentence"}}
    # written when one schema held both approaches' settings (and the dead `embedding_dropout`)
    old = {**config, "approach": {**config["approach"], "attention": "causal", "embedding_dropout": 0.0}}
    _results(tmp_path / "a", "complete", old)
    assert finished_results(tmp_path / "a", config) is not None
    changed = {**config, "approach": {"name": "seq2seq", "unit": "document"}}
    assert finished_results(tmp_path / "a", changed) is None


def test_a_skipped_cell_returns_its_dev_f1_to_the_sweeper(tmp_path, capsys):
    from clinical_ner.config import compose_config, public_config
    from clinical_ner.run.record.results import write_results
    from clinical_ner.train import main

    cfg = compose_config([f"output_dir={tmp_path}", "logger=none"])
    write_results(
        tmp_path,
        {
            "status": "complete",
            "config": public_config(cfg),
            "dev": {"f1": 0.3},
            "test": {"f1": 0.9},
            "code": code_version(),
        },
    )
    assert main.__wrapped__(cfg) == 0.3  # a tuning sweeper must never select on test
    assert f"skip: {tmp_path} is complete" in capsys.readouterr().out


def _train(run_dir: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    """One tiny run on the synthetic corpus into `run_dir` (3 steps)."""
    command = [sys.executable, "-m", "clinical_ner.train", "data=synthetic", "logger=csv", "save_model=false"]
    command += ["trainer.max_steps=3", "trainer.enable_progress_bar=false", "trainer.threads=1", *SMALL]
    env = {**os.environ, "CLINICAL_NER_CACHE": str(cache)}
    command += [f"hydra.run.dir={run_dir}", *extra]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_rerun_with_another_config_trains_from_scratch(tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    first = _train(run, cache, "optim.lr=0.001")
    assert first.returncode == 0, first.stderr[-2000:]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    # the same folder with another lr: the finished 3-step checkpoint must not be restored
    second = _train(run, cache, "optim.lr=0.002")
    assert second.returncode == 0, second.stderr[-2000:]
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["optim"]["lr"] == 0.002
    # trained, not restored at its end
    assert results["train"]["steps"] == 3 and results["train"]["tokens"] > 0
    (stale,) = run.glob("stale-*")
    assert json.loads((stale / "results.json").read_text())["config"]["optim"]["lr"] == 0.001
    assert (stale / "checkpoints" / "last.ckpt").is_file()
    (line,) = [line for line in (run / "train.log").read_text().splitlines() if "rerun:" in line]
    assert "optim.lr 0.001 -> 0.002" in line and "training from scratch" in line
    # an explicit ckpt_path is the user's choice: `last` with more steps continues in place
    third = _train(run, cache, "optim.lr=0.002", "trainer.max_steps=5", "ckpt_path=last")
    assert third.returncode == 0, third.stderr[-2000:]
    extended = json.loads((run / "results.json").read_text())
    assert extended["train"]["steps"] == 5 and len(list(run.glob("stale-*"))) == 1
    # it went on from step 3 (restored, not retrained), and its cost counts all 5 steps
    assert "Restored all states from the checkpoint" in third.stdout + third.stderr
    assert extended["train"]["tokens"] > results["train"]["tokens"]
