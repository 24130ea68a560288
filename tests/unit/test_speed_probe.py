"""This CPU's limits measured in the run: the GEMM probe, `precision: auto`, the results.json `train` fields it
feeds (steady-state tokens/s, GEMM fraction), and benchmarks/bench_real_weights.py's quick mode."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from clinical_ner.config import compose_config
from clinical_ner.planning import auto_precision, probe
from clinical_ner.planning.probe import GemmProbe, probe_gemm, train_flops_per_token
from clinical_ner.run.pipeline import gemm_section
from clinical_ner.training.callbacks import TrainStepTimer
from clinical_ner.training.optim import OptimSpec, ScheduledModule

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("bf16", "fp32", "chosen"),
    [(2.5, 0.3, "bf16-mixed"), (0.001, 0.008, "32-true"), (None, 0.008, "32-true"), (0.33, 0.3, "32-true")],
)
def test_probe_picks_the_faster_dtype(bf16, fp32, chosen):
    # an AMX host (bf16 ~8x fp32), an AVX2 host (bf16 a scalar loop), no bf16 kernel at all, a tie -> fp32
    assert GemmProbe(bf16, fp32, "X").precision == chosen


def test_probe_skips_bf16_without_kernels(monkeypatch):
    monkeypatch.setattr(probe, "bf16_kernels", lambda: False)
    measured = probe_gemm(32, 64, 4, 2, seconds=0.05, repeats=1)
    assert measured.bf16_tflops is None and measured.fp32_tflops > 0
    assert measured.precision == "32-true" and measured.tflops("bf16-mixed") is None


def test_auto_resolves_trainer_and_pretrain(monkeypatch, caplog):
    cfg = compose_config(["approach=tokencls", "trainer.precision=auto", "pretrain.trainer.precision=auto"])
    cfg.trainer.accelerator = "cpu"
    monkeypatch.setattr(auto_precision, "probe_gemm", lambda *a, **k: GemmProbe(None, 0.008, "AVX2"))
    with caplog.at_level("INFO", logger=auto_precision.__name__):
        found = auto_precision.resolve_precision(cfg)
    assert "bf16 no kernel, fp32 0.008 TFLOP/s; precision 32-true" in caplog.text
    assert found.fp32_tflops == 0.008
    assert cfg.trainer.precision == "32-true" and cfg.pretrain.trainer.precision == "32-true"
    monkeypatch.setattr(auto_precision, "probe_gemm", lambda *a, **k: GemmProbe(2.5, 0.3, "AVX512"))
    cfg.trainer.precision, cfg.pretrain.trainer.precision = "auto", "bf16-true"  # an explicit choice is kept
    auto_precision.resolve_precision(cfg)
    assert cfg.trainer.precision == "bf16-mixed" and cfg.pretrain.trainer.precision == "bf16-true"


def test_the_config_keeps_auto_after_the_run(monkeypatch):
    cfg = compose_config(["approach=tokencls", "trainer.precision=auto", "pretrain.trainer.precision=auto"])
    cfg.trainer.accelerator = "cpu"
    monkeypatch.setattr(auto_precision, "probe_gemm", lambda *a, **k: GemmProbe(None, 0.008, "AVX2"))
    with pytest.raises(RuntimeError), auto_precision.as_asked(cfg):  # a failing run too: its record says auto
        auto_precision.resolve_precision(cfg)
        assert cfg.trainer.precision == "32-true"
        raise RuntimeError
    assert cfg.trainer.precision == "auto" and cfg.pretrain.trainer.precision == "auto"


def test_small_recipes_use_auto_precision_and_fused_adamw():
    for approach in ("tokencls", "seq2seq"):
        cfg = compose_config([f"approach={approach}", "model=smollm2", "scale=small"])
        assert cfg.trainer.precision == "auto" and cfg.optim.optimizer.fused is True
        assert cfg.pretrain.trainer.precision == "auto" and cfg.pretrain.optimizer.fused is True


def test_steady_tokens_leave_out_the_warmup_steps():
    timer = TrainStepTimer(warmup_steps=2)
    for tokens in (100, 100, 10, 30):
        batch = {"attention_mask": torch.ones(1, tokens)}
        timer.on_train_batch_start(None, None, batch, 0)
        timer.on_train_batch_end(None, None, None, batch, 0)
    assert timer.tokens == 240 and timer.steady_tokens == 40 and timer.steps == 4
    assert 0 < timer.steady_seconds < timer.seconds
    assert TrainStepTimer(warmup_steps=5).steady_tokens_per_s is None  # no step after warm-up


def test_gemm_fraction_in_the_train_section():
    cfg = OmegaConf.create(
        {
            "trainer": {"precision": "32-true"},
            "approach": {"finetune": "full"},
            "scale": {"pretrained": True},
            "model": {
                "arch": {
                    "vocab_size": 100,
                    "hidden_size": 64,
                    "intermediate_size": 128,
                    "num_layers": 2,
                    "num_heads": 4,
                    "num_kv_heads": 2,
                    "tie_word_embeddings": False,
                }
            },
        }
    )
    flops = train_flops_per_token(64, 128, 4, 2, 2, full=True)
    section = gemm_section(
        cfg, GemmProbe(None, 0.002, "AVX2"), {"tokens_per_s": 5.0, "tokens_per_s_steady": 10.0}
    )
    assert section["precision"] == "32-true" and section["gemm"]["chosen"] == "32-true"
    assert section["gemm_fraction"] == pytest.approx(10.0 * flops / 2e9)  # steady rate over the fp32 rate
    assert gemm_section(cfg, None, {})["gemm"] is None  # a GPU run: no CPU probe


@pytest.mark.parametrize("order", [[], ["--sequential"]])
def test_bench_quick_mode_runs_both_variants(capsys, order):
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench_real_weights.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = bench  # its dataclass looks its module up
    spec.loader.exec_module(bench)
    args = ["--small", "--steps", "1", "--rounds", "1", "--batch-size", "2", "--prompts", "3", *order]
    out = bench.main([*args, "--max-new-tokens", "4", "--probe-seconds", "0.05", "--threads", "1"])
    printed = capsys.readouterr().out
    for line in (
        "GEMM float32 1 thread",
        "memory bandwidth",
        "training (token classification",
        "generation (",
    ):
        assert line in printed
    assert out["auto"] in ("bf16-mixed", "32-true") and out["bandwidth_gbs"] > 0
    assert set(out["training"]) == {"before", "auto-only", "after"}
    assert all(row["tokens_per_s"] > 0 and row["gemm_fraction"] > 0 for row in out["training"].values())
    s2s = out["seq2seq_training"]
    assert set(s2s) == {"full-head", "answer-head", "shared-prefix"} and "training (seq2seq" in printed
    for name in ("answer-head", "shared-prefix"):  # the same losses step by step, same weights
        assert s2s[name]["loss_difference"] < 1e-5
    assert s2s["answer-head"]["decoder_share"] == 1.0 and 0 < s2s["shared-prefix"]["decoder_share"] < 1
    assert 0 < s2s["answer-head"]["labelled"] < s2s["answer-head"]["tokens"]
    assert all(0 < row["optimizer_share"] < 1 for row in (*s2s.values(), *out["training"].values()))
    assert 0 < out["padding"]["tokencls"] < 1 and 0 < out["padding"]["seq2seq"] < 1
    assert out["generation"]["before"]["same_answers"] == 3  # the baseline agrees with itself
    assert out["generation"]["shared-prefix"]["same_as_after"] == 3  # fp32 both: prefilling the prefix once
    assert SimpleNamespace(**out["generation"]["after"]).docs_per_s > 0


class _Linear(ScheduledModule):
    def training_step(self, batch, batch_idx):
        return self.model(batch[0]).pow(2).mean()


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_a_fused_recipe_trains_in_either_precision_auto_may_pick(precision):
    # fused AdamW unscales inside its step, so Lightning refuses to clip its gradients under mixed precision
    # (an AMX CPU picks bf16-mixed for the same recipe that runs fp32 on an AVX2 one)
    factory = functools.partial(torch.optim.AdamW, fused=True)
    module = _Linear(torch.nn.Linear(4, 4), OptimSpec(factory, 1e-3, 0.0, 0.1))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu", precision=precision, gradient_clip_val=1.0, max_steps=2, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, data)
    assert trainer.global_step == 2
    fused = trainer.optimizers[0].defaults.get("fused")
    assert bool(fused) == (precision == "32-true")  # kept where it is allowed
