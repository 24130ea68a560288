"""The planner's micro-batch: the recipe's effective batch in the largest micro-batch that fits the device."""

from __future__ import annotations

import json
from dataclasses import replace

from clinical_ner.config import compose_config
from clinical_ner.planning import GiB, plan_setup, setup_for
from clinical_ner.planning.setup import micro_batch_for


def paper_tokencls(family: str = "llama3_1"):
    return compose_config([f"model={family}", "approach=tokencls", "scale=paper"])  # 8 x 2 = 16


def planned(cfg, batch: int) -> int:
    return plan_setup(replace(setup_for(cfg, cuda=True), batch=batch)).total


def test_a_large_gpu_trains_the_effective_batch_in_one_micro_batch():
    cfg = paper_tokencls()
    assert (cfg.data.batch_size, cfg.trainer.accumulate_grad_batches) == (8, 2)
    assert micro_batch_for(cfg, int(141 * GiB)) == (16, 1)


def test_the_largest_fitting_divisor_keeps_the_effective_batch():
    cfg = compose_config(["model=llama3_2", "approach=tokencls", "scale=paper", "data.batch_size=2"])
    cfg.trainer.accumulate_grad_batches = 6  # effective 12: divisors above 2 are 3, 4, 6, 12
    just_four = planned(cfg, 4) + 1  # fits 4 but not 6
    assert planned(cfg, 6) > just_four
    assert micro_batch_for(cfg, just_four) == (4, 3)


def test_the_recipe_stays_when_nothing_larger_fits():
    cfg = paper_tokencls()
    assert micro_batch_for(cfg, planned(cfg, 16) - 1) == (8, 2)
    # not even the recipe fits: its own split, the OOM says why
    assert micro_batch_for(cfg, 1 * GiB) == (8, 2)


def test_a_rerun_after_a_planned_micro_batch_skips_the_finished_cell(tmp_path, monkeypatch, capsys):
    """The chosen split is recorded under `train`, the config stays as asked, so the next run skips the cell
    (CPU: the GPU's memory and the planner's choice are patched)."""
    from clinical_ner.run import pipeline
    from clinical_ner.run.record.code_version import code_version
    from clinical_ner.train import main

    monkeypatch.setenv("CLINICAL_NER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pipeline, "cuda_memory", lambda cfg: int(80 * GiB), raising=False)
    monkeypatch.setattr(pipeline, "micro_batch_for", lambda cfg, memory: (2, 4))
    overrides = [
        "data=synthetic",
        "logger=none",
        "save_model=false",
        "trainer.max_steps=2",
        "trainer.threads=1",
    ]
    overrides += ["data.batch_size=8", "trainer.enable_progress_bar=false", f"output_dir={tmp_path / 'run'}"]
    overrides += [
        "scale.hidden_size=32",
        "scale.num_layers=1",
        "scale.intermediate_size=64",
        "data.train_limit=40",
    ]
    main.__wrapped__(compose_config(overrides))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["data"]["batch_size"] == 8
    assert results["config"]["trainer"]["accumulate_grad_batches"] == 1
    assert (results["train"]["micro_batch"], results["train"]["accumulate_grad_batches"]) == (2, 4)
    assert results["code"] == code_version()  # and which code computed it (a rerun of other code redoes it)
    assert results["machine"]["threads"] == 1 and results["machine"]["cpu_capability"]  # and on which CPU
    # 2 steps end before the first epoch's validation: the final weights are scored once, nothing is selected
    assert results["selection"]["validations"] == 1 and results["selection"]["epoch"] is None
    capsys.readouterr()
    main.__wrapped__(compose_config(overrides))
    assert f"skip: {tmp_path / 'run'} is complete" in capsys.readouterr().out
    assert not list((tmp_path / "run").glob("stale-*"))
