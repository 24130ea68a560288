"""The planner's micro-batch: the recipe's effective batch in the largest micro-batch that fits the device."""

from __future__ import annotations

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
