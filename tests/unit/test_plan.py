"""The planner (clinical_ner.planning: plan.py, the command, and its formulas) against measurements on CPU.

Acceptance: the memory estimate is within 15% of the measured tensor bytes (parameters, gradients, AdamW state,
saved activations) wherever measured. `python tests/unit/test_plan.py` prints the measured/planned table that
docs/planning.md quotes.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from clinical_ner.checks.gpu import planner as gpu_check
from clinical_ner.config import compose_config
from clinical_ner.models.backbone import count_parameters
from clinical_ner.planning import GiB, count_params, flops_per_token, plan_memory, plan_pretrain, setup_for
from clinical_ner.planning.measure import build_model, measure_step, random_batch
from clinical_ner.planning.memory import Setup, nf4_bytes, plan_setup
from clinical_ner.planning.plan import main as plan_main

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 0.15
COMPONENTS = ("weights", "adapters", "gradients", "optimizer", "activations", "logits")
SMALL = [
    "scale.hidden_size=64",
    "scale.intermediate_size=128",
    "scale.num_layers=2",
    "scale.num_heads=4",
    "scale.vocab_size=500",
    "data.batch_size=2",
    "approach.max_length=32",
]
TINY = ["data.batch_size=2", "approach.max_length=48"]  # default tiny scale: 256 hidden, 4 layers, 8k vocab
PRETRAIN = ["corpus=es", "pretrain.batch_size=2", "pretrain.block_size=32"]

# id -> (overrides, stage, checkpointing)
CASES: dict[str, tuple[list[str], str | None, bool]] = {
    "tokencls-full-fp32": (SMALL + ["trainer.precision=32-true"], None, False),
    "tokencls-lora-fp32": (SMALL + ["approach.finetune=lora", "trainer.precision=32-true"], None, False),
    "tokencls-full-bf16": (SMALL + ["trainer.precision=bf16-true"], None, False),
    "tokencls-lora-bf16": (SMALL + ["approach.finetune=lora", "trainer.precision=bf16-true"], None, False),
    "tokencls-full-mixed": (SMALL + ["model=llama3", "scale.num_heads=8"], None, False),
    "tokencls-lora-mixed-ckpt": (SMALL + ["approach.finetune=lora", "model=llama3_1"], None, True),
    "tokencls-lora-mixed-bf16base": (SMALL + ["approach.finetune=lora", "scale.dtype=bfloat16"], None, False),
    "tokencls-lora-nodropout": (SMALL + ["approach.finetune=lora", "approach.lora.dropout=0"], None, False),
    "seq2seq-full-fp32": (SMALL + ["approach=seq2seq", "trainer.precision=32-true"], None, False),
    "seq2seq-lora-bf16-gqa": (
        SMALL
        + ["approach=seq2seq", "approach.finetune=lora", "approach.lora.r=64", "model=llama3"]
        + ["scale.num_heads=8", "trainer.precision=bf16-true"],
        None,
        False,
    ),  # fmt: skip
    "seq2seq-full-mixed-tied": (SMALL + ["approach=seq2seq", "model=llama3_2"], None, False),
    "seq2seq-lora-mixed-bf16base": (
        SMALL + ["approach=seq2seq", "approach.finetune=lora", "scale.dtype=bfloat16"],
        None,
        False,
    ),
    "seq2seq-full-bf16-ckpt": (SMALL + ["approach=seq2seq", "trainer.precision=bf16-true"], None, True),
    "pretrain-gqa": (SMALL + PRETRAIN + ["model=llama3", "scale.num_heads=8"], "pretrain", False),
    "pretrain-ckpt": (SMALL + PRETRAIN + ["pretrain.trainer.gradient_checkpointing=true"], "pretrain", True),
    "tiny-tokencls": (TINY, None, False),
    "tiny-seq2seq": (TINY + ["approach=seq2seq"], None, False),
    "tiny-seq2seq-lora-bf16": (
        TINY + ["approach=seq2seq", "approach.finetune=lora", "trainer.precision=bf16-true"],
        None,
        False,
    ),
}
NF4_CASES = {
    "nf4-seq2seq-lora": SMALL + ["approach=seq2seq", "approach.finetune=lora", "trainer.precision=bf16-true"],
    "nf4-tiny-tokencls-lora": TINY + ["approach.finetune=lora", "trainer.precision=bf16-true"],
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Toy models run fastest on one thread (several only synchronise, dreadfully on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def measure_case(overrides: list[str], stage: str | None, checkpointing: bool) -> tuple[dict, dict]:
    """(measured, planned) bytes per component for one CPU case."""
    cfg = compose_config(overrides)
    setup: Setup = replace(setup_for(cfg, stage, cuda=False), checkpointing=checkpointing)
    torch.manual_seed(0)
    model = build_model(cfg, setup)
    measured = measure_step(model, setup, random_batch(setup))
    plan = plan_setup(setup)
    return (
        {k: getattr(measured, k) for k in COMPONENTS} | {"total": measured.total},
        {k: getattr(plan, k) for k in COMPONENTS} | {"total": plan.tensors - plan.transient},
    )


def assert_close(measured: dict, planned: dict) -> None:
    for key, value in planned.items():
        if value == 0:
            assert measured[key] == 0, key
            continue
        ratio = measured[key] / value
        assert abs(ratio - 1) <= TOLERANCE, f"{key}: measured {measured[key]:,}, planned {value:,}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_measured_bytes(case: str) -> None:
    assert_close(*measure_case(*CASES[case]))


@pytest.mark.parametrize("case", sorted(NF4_CASES))
def test_nf4_plan_matches_measured_bytes(case: str) -> None:
    pytest.importorskip("bitsandbytes")
    assert_close(*measure_case(NF4_CASES[case] + ["quantization=nf4"], None, False))


def test_nf4_bytes_per_param() -> None:
    assert nf4_bytes(4096 * 4096) / 4096**2 == pytest.approx(0.5 + 1 / 64 + 4 / (64 * 256), rel=1e-3)
    assert nf4_bytes(4096 * 4096, double_quant=False) / 4096**2 == pytest.approx(0.5625, rel=1e-3)


FAMILIES = ("llama2", "llama3", "llama3_1", "llama3_2")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("approach", ["tokencls", "seq2seq"])
def test_paper_parameter_counts_match_a_meta_build(family: str, approach: str) -> None:
    """The exact counts, against the project's builders at real size on the meta device (no weights)."""
    cfg = compose_config([f"model={family}", f"approach={approach}", "scale=paper"])
    setup = setup_for(cfg)
    trainable, total = count_parameters(build_model(cfg, setup, "meta"))
    n = count_params(setup)
    assert (n.total, n.trainable) == (total, trainable)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("approach", ["tokencls", "seq2seq"])
@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_every_paper_config_plans(family: str, approach: str, quantization: str) -> None:
    base = [f"model={family}", f"approach={approach}", "scale=paper"]
    cfg = compose_config([*base, f"quantization={quantization}"])
    plan = plan_memory(cfg)
    assert 0 < plan.adapters < plan.weights < 20 * GiB
    assert plan.gradients == plan.adapters and plan.optimizer == 2 * plan.adapters  # bf16 AdamW, CUDA steps
    assert plan.params.trainable / plan.params.total < 0.03
    assert plan.activations > 0 and plan.logits > 0 and plan.total > plan.tensors
    assert plan_memory(cfg, checkpointing=True).activations < plan.activations / 10
    if quantization == "nf4":
        dense = plan_memory(compose_config(base))
        assert plan.weights < dense.weights / 2.5
    f = flops_per_token(setup_for(cfg))
    assert 2 * f.matmul_params < f.inference < f.train < 6 * f.train


def test_llama2_7b_weights() -> None:
    def weights(*extra: str) -> float:
        return plan_memory(compose_config(["model=llama2", "scale=paper", *extra])).weights / GiB

    assert weights("approach=seq2seq") == pytest.approx(12.55, abs=0.05)  # 6.74B x 2 bytes
    assert weights("approach=tokencls") == pytest.approx(12.31, abs=0.05)  # no lm_head: 6.61B
    assert 3.5 <= weights("approach=seq2seq", "quantization=nf4") <= 4.0  # lm_head + embeddings stay bf16
    assert 3.2 <= weights("approach=tokencls", "quantization=nf4") <= 4.0


def test_pretrain_stage_is_planned_with_fsdp() -> None:
    assert plan_pretrain(compose_config(["scale=paper"])) is None  # corpus=none: no stage
    cfg = compose_config(["scale=paper", "model=llama3", "corpus=es", "pretrain.trainer.devices=4"])
    plan = plan_pretrain(cfg)
    assert plan.setup.fsdp and plan.setup.lora is None and plan.setup.checkpointing
    single = plan_pretrain(compose_config(["scale=paper", "model=llama3", "corpus=es"]))
    assert plan.weights == pytest.approx(single.weights / 4, rel=1e-6)
    assert plan.optimizer == pytest.approx(single.optimizer / 4, rel=1e-6)
    assert 0 < plan.distributed < single.weights / 2
    assert plan.activations == single.activations  # batch_size is per device


def test_flops_match_torch_flop_counter() -> None:
    """6N + 12 L s h (full) is what FlopCounterMode counts on the real model; LoRA skips frozen weight grads."""
    from torch.utils.flop_counter import FlopCounterMode

    for extra, tolerance in (([], 1e-9), (["approach.finetune=lora"], 0.03)):
        cfg = compose_config(["approach=seq2seq", "model=llama3", "data.batch_size=2", *extra])
        setup = setup_for(cfg)
        model = build_model(cfg, setup, "meta")
        ids = torch.zeros(setup.batch, setup.length, dtype=torch.long, device="meta")
        with FlopCounterMode(display=False) as counter:
            model(input_ids=ids, labels=ids).loss.backward()
        expected = flops_per_token(setup).train * setup.tokens
        assert counter.get_total_flops() == pytest.approx(expected, rel=tolerance)


def test_cli_prints_tables(capsys) -> None:
    assert plan_main(["model=llama2", "scale=paper", "quantization=nf4", "--gpu", "l4"]) == 0
    out = capsys.readouterr().out
    assert "weights" in out and "NF4" in out and "tokens/s" in out and "L4" in out
    assert plan_main(["scale=paper", "corpus=es", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"stage": "pretrain"' in out and '"stage": "tokencls"' in out


@pytest.mark.parametrize(
    "argv",
    [["model=nope"], ["data.batch_size=abc"], ["trainer.precision=64"], ["--mfu", "2"], ["--gpu", "tpu"]],
)
def test_cli_errors_are_one_line(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        plan_main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err


def test_cli_error_exit_code_in_a_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clinical_ner.planning.plan", "model=nope"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "error: " in result.stderr


def test_gpu_check_small_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.md"
    assert gpu_check.main(["--small", "--families", "llama3", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| llama3 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["tokencls", "seq2seq", "generate"]
    for row in rows[:2]:  # training rows: measured tensor bytes / planned
        assert abs(float(row.split("|")[-2]) - 1) <= TOLERANCE


if __name__ == "__main__":  # the ratio table of docs/planning.md
    torch.set_num_threads(1)
    print("| case | " + " | ".join(COMPONENTS) + " | total |")
    print("| --- |" + " ---: |" * (len(COMPONENTS) + 1))
    cases = {k: v for k, v in CASES.items()}
    cases |= {k: (v + ["quantization=nf4"], None, False) for k, v in NF4_CASES.items()}
    for name, case in cases.items():
        measured, planned = measure_case(*case)
        cells = [f"{measured[k] / planned[k]:.3f}" if planned[k] else "-" for k in (*COMPONENTS, "total")]
        print(f"| {name} | " + " | ".join(cells) + " |")
