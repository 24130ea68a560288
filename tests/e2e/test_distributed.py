"""Several devices, one run: rank-aware batches, DDP equivalent to one process, one run folder per job, a dead
rank failing its job (under torchrun and in a local sweep) without a hang, and configs that cannot run fail in
seconds. CPU only: DDP over gloo with 2 processes.

Run as a script (`python tests/e2e/test_distributed.py OUT DEVICES BATCH STEPS`, under torchrun for 2 devices),
this file is one rank of the loss-equivalence test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from composing import MICRO, compose_train

from clinical_ner.config import compose_config
from clinical_ner.data.batching import LengthGroupedBatchSampler, rank_slice
from clinical_ner.distributed import checks, launch, local, scope
from clinical_ner.errors import RankFailed, UserError, disk_full
from clinical_ner.run.record.folder import RunFolder
from clinical_ner.training.optim import OptimSpec
from clinical_ner.training.rank_zero import global_rank, is_global_zero
from clinical_ner.training.timings import PhaseTimes

ROOT = Path(__file__).resolve().parents[2]
TINY = MICRO
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "trainer.threads=1"]


# --- rank-aware length-grouped batches ------------------------------------------------------------------


@pytest.mark.parametrize("n,batch,world", [(100, 4, 2), (37, 4, 2), (37, 3, 4), (5, 4, 3), (1000, 8, 3)])
def test_rank_batches_are_slices_of_the_single_process_batches(n, batch, world):
    lengths = [(i * 7919) % 61 + 1 for i in range(n)]
    single = LengthGroupedBatchSampler(lengths, batch * world, seed=3, mega_batch_factor=5)
    ranks = [
        LengthGroupedBatchSampler(lengths, batch, seed=3, mega_batch_factor=5, num_replicas=world, rank=r)
        for r in range(world)
    ]
    for epoch in (0, 1):
        for sampler in [single, *ranks]:
            sampler.set_epoch(epoch)
        expected = single.batches()
        per_rank = [r.batches() for r in ranks]
        # every rank takes the same number of steps (or DDP hangs), none of them empty
        assert all(len(b) == len(expected) == len(r) for b, r in zip(per_rank, ranks, strict=True))
        assert all(batch for batches in per_rank for batch in batches)
        for step, global_batch in enumerate(expected):
            joined = [i for r in range(world) for i in per_rank[r][step]]
            if len(global_batch) >= world:
                assert joined == global_batch  # same windows, same order as one process
            else:
                assert set(joined) == set(global_batch)  # topped up by repeating: every window kept


def test_rank_slice_splits_a_short_batch_evenly():
    assert [rank_slice(list(range(5)), r, 2) for r in range(2)] == [[0, 1, 2], [3, 4]]
    assert [rank_slice([7], r, 3) for r in range(3)] == [[7], [7], [7]]


def test_sampler_reads_the_process_group_by_default():
    sampler = LengthGroupedBatchSampler([3, 1, 2], 2, seed=0)
    assert (sampler.num_replicas, sampler.rank) == (1, 0)
    with pytest.raises(ValueError):
        LengthGroupedBatchSampler([3, 1, 2], 2, seed=0, num_replicas=2, rank=2)


# --- checks before anything starts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "accelerator,devices,expected", [("cpu", 2, 2), ("cpu", "3", 3), ("cpu", "auto", 1), ("cpu", [0, 1], 2)]
)
def test_device_count(accelerator, devices, expected):
    assert checks.device_count(accelerator, devices) == expected


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["trainer=fsdp", "trainer.accelerator=cpu"], "needs CUDA GPUs"),
        (["trainer=fsdp", "trainer.accelerator=gpu"], "no CUDA GPU is visible"),
        (["trainer=ddp", "trainer.strategy=ddp_spawn"], "expected one of"),
        (["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=0"], "positive count"),
        (
            ["corpus=es", "pretrain.trainer.devices=2", "pretrain.trainer.accelerator=cpu"],
            "one device for now",
        ),
    ],
)
def test_impossible_distributed_configs_fail_before_loading(overrides, message):
    if torch.cuda.is_available():
        pytest.skip("these combinations are about a machine without CUDA")
    with pytest.raises(UserError, match=message):
        checks.check_job(compose_config(overrides))


def test_fsdp_with_lora_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a 2-GPU machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cfg = compose_config(["scale=paper", "trainer=fsdp"])  # the paper recipes are LoRA
    with pytest.raises(UserError, match="use trainer=ddp"):
        checks.check_distributed(cfg)
    assert checks.check_distributed(compose_config(["trainer=fsdp"])) == 2  # tiny: full fine-tuning
    shared = ["trainer=fsdp", "approach=seq2seq", "approach.share_prefix=true"]
    with pytest.raises(UserError, match="share_prefix=true cannot run under trainer.strategy=fsdp"):
        checks.check_distributed(compose_config(shared))


def test_ddp_config_on_cpu_implies_two_processes():
    cfg = compose_config(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
    assert checks.check_job(cfg) == 2


def test_a_job_leaves_no_launch_variables_behind(monkeypatch):
    for name in scope.LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    cfg = compose_config(["trainer.accelerator=cpu"])
    seen = []

    def stages(rank_cfg, times):
        seen.append(rank_cfg)  # one device: nothing started, the run folder is this process's
        os.environ["LOCAL_RANK"] = "0"  # what Lightning's own launcher leaves set
        os.environ["MASTER_PORT"] = "1234"
        return {"status": "complete"}

    assert launch.run_job(cfg, PhaseTimes(), stages) == {"status": "complete"}
    assert seen == [cfg] and seen[0] is cfg
    assert not any(name in os.environ for name in scope.LAUNCH_ENV)


def test_ranks_above_zero_of_external_launches_get_a_scratch_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCAL_RANK", "1")  # as torchrun or SLURM would start rank 1
    monkeypatch.delenv("RANK", raising=False)
    cfg = compose_config(["trainer.accelerator=cpu", f"output_dir={tmp_path / 'run'}"])
    scratch = []

    def stages(rank_cfg, times):
        assert not is_global_zero()
        scratch.append(Path(rank_cfg.output_dir))
        assert scratch[0] != tmp_path / "run" and scratch[0].is_dir()

    launch.run_job(cfg, PhaseTimes(), stages)
    assert scratch and not scratch[0].exists()


def test_resolved_config_round_trips(tmp_path):
    cfg = compose_config(["trainer=ddp", "approach=seq2seq", f"output_dir={tmp_path}"])
    path = tmp_path / "config.yaml"
    path.write_text(local.resolved_yaml(cfg))
    loaded = local.load_config(path)
    assert loaded == cfg
    assert type(loaded.approach.decoding) is type(cfg.approach.decoding)  # enums back on the typed schema


def _failure(tmp_path: Path, failures: dict, reports: dict) -> Exception:
    """The job failure the supervisor raises for the agent's `failures` (rank -> (exit code, timestamp)) and the
    ranks' written `reports`."""
    handle = local.LocalLaunch(tmp_path / "work")
    handle.work.mkdir(parents=True)
    folder = RunFolder(tmp_path / "run")
    folder.rank_log(1).parent.mkdir(parents=True)
    folder.rank_log(1).write_text("loading\nrank 1 ran out of memory\n")
    for rank, record in reports.items():
        handle.failure(rank).write_text(json.dumps(record))
    found = {rank: SimpleNamespace(exitcode=code, timestamp=when) for rank, (code, when) in failures.items()}
    return local.failure_of(found, handle, folder, PhaseTimes())


def test_the_rank_that_died_first_is_the_cause(tmp_path):
    stopped = {"error": "RankFailed: stopped", "stopped": True, "disk_full": None, "timings": {"fit": 2.0}}
    err = _failure(tmp_path, {0: (1, 10), 1: (-9, 11)}, {0: stopped})  # rank 0 only stopped because of rank 1
    assert isinstance(err, RankFailed) and str(err).startswith("rank 1 exited with code -9")
    assert "rank 1 ran out of memory" in str(err)  # the dead rank's log tail
    # rank 0 killed by the agent's SIGTERM before it could say so; rank 1 exited by itself
    err = _failure(tmp_path / "b", {0: (-signal.SIGTERM, 10), 1: (1, 10)}, {})
    assert str(err).startswith("rank 1 exited with code 1")


def test_rank_zero_failures_keep_their_kind(tmp_path):
    user = {"error": "nothing to train on", "stopped": False, "disk_full": None, "timings": {}}
    err = _failure(tmp_path, {0: (2, 10)}, {0: user})
    assert isinstance(err, UserError) and str(err) == "nothing to train on"
    full = {"error": "no space left on device writing /x", "stopped": False, "disk_full": "/x", "timings": {}}
    err = _failure(tmp_path / "b", {0: (1, 10)}, {0: full})
    assert disk_full(err) is not None and err.filename == "/x"  # a full disk still stops a sweep


def test_ranks_exit_when_the_supervisor_is_killed(tmp_path):
    child = (
        "from clinical_ner.distributed.worker import exit_with_parent; exit_with_parent(0.1); import time; "
    )
    child += "print('started', flush=True); time.sleep(120)"
    script = f"""
import subprocess, sys, time
log = open({str(tmp_path / "rank-1.log")!r}, "wb")
proc = subprocess.Popen([sys.executable, "-c", {child!r}], stdout=log, stderr=subprocess.STDOUT)
print(proc.pid, flush=True)
time.sleep(120)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        for _ in range(200):  # the child is up
            if "started" in (tmp_path / "rank-1.log").read_text():
                break
            time.sleep(0.1)
        assert "started" in (tmp_path / "rank-1.log").read_text()
        os.kill(pid, 0)  # alive
        parent.send_signal(signal.SIGKILL)  # the supervisor dies without stopping its ranks
        parent.wait()
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break  # gone (reaped by init)
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("rank 1 outlived its supervisor")
    finally:
        parent.kill()


def _sigterm_soon(delay: float) -> None:
    """SIGTERM to this process after `delay` seconds, as torchrun's agent sends when another rank died."""
    threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM)).start()


def test_the_launchers_sigterm_becomes_rank_failed():
    with pytest.raises(RankFailed, match="stopped by the launcher"), scope.stopped_by_launcher():
        _sigterm_soon(0.1)
        time.sleep(30)  # the handler raises here
    # this rank's collective broke first (the peer is gone); the agent's SIGTERM follows: a dead peer's fault
    expected = pytest.raises(RankFailed, match="stopped by the launcher")
    with expected as caught, scope.stopped_by_launcher(grace_s=30):
        _sigterm_soon(0.2)
        raise RuntimeError("Read error: Connection reset by peer")
    assert "Connection reset" in str(caught.value.__cause__)  # the symptom, kept as the cause
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_a_ranks_own_errors_go_through():
    with pytest.raises(ValueError, match="a bug"), scope.stopped_by_launcher(grace_s=0.1):
        raise ValueError("a bug")  # no SIGTERM followed: not another rank's doing
    started = time.monotonic()
    with pytest.raises(UserError), scope.stopped_by_launcher(grace_s=30):
        raise UserError("bad")
    assert time.monotonic() - started < 5  # at once


def test_unsharded_copy_rebuilds_the_trained_model():
    # what load_best does after FSDP, where the trained model's layers stay sharded wrappers
    from transformers import LlamaConfig, LlamaForTokenClassification

    from clinical_ner.models.attention import is_bidirectional, set_attention_direction
    from clinical_ner.training.best_weights import unsharded_copy

    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    config.num_attention_heads, config.num_key_value_heads, config.num_labels = 2, 2, 3
    model = LlamaForTokenClassification(config).to(torch.bfloat16).eval()
    set_attention_direction(model, bidirectional=True)
    copy = unsharded_copy(model, model.state_dict(), torch.device("cpu")).eval()
    assert copy is not model and is_bidirectional(copy) and copy.dtype == torch.bfloat16
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, copy(input_ids=ids).logits)


# --- SLURM --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trainer,devices", [("default", 1), ("ddp", 4)])
def test_slurm_launcher_composes_with_one_task_per_device(trainer, devices):
    from omegaconf import OmegaConf

    overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", f"trainer={trainer}"]
    if trainer != "default":
        overrides.append(f"trainer.devices={devices}")
    cfg = compose_train(overrides, hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu"
    assert launcher.gpus_per_node == launcher.tasks_per_node == devices  # resolved from trainer.devices
    assert launcher.nodes == 1 and launcher.timeout_min > 0
    text = OmegaConf.to_yaml(launcher)
    assert "/home/" not in text and "/scratch" not in text  # no cluster paths baked in


def test_slurm_tasks_must_match_devices_and_give_the_rank(monkeypatch):
    for name in ("LOCAL_RANK", "RANK", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    with pytest.raises(UserError, match="one task per device"):
        checks.check_distributed(
            compose_config(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
        )
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert checks.check_distributed(compose_config(["trainer=ddp", "trainer.accelerator=cpu"])) == 2
    assert checks.externally_launched() and global_rank() == 1


def test_torchrun_processes_must_match_devices(monkeypatch):
    for name in ("LOCAL_RANK", "RANK", "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_JOB_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")  # as torchrun starts each process
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    with pytest.raises(UserError, match="torchrun --nproc_per_node 2"):
        checks.check_distributed(
            compose_config(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
        )
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert checks.check_distributed(compose_config(["trainer=ddp", "trainer.accelerator=cpu"])) == 2


def test_slurm_launcher_composes_from_the_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "clinical_ner.train", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"]
        + ["trainer=ddp", "trainer.devices=4", "--cfg", "hydra", "--package", "hydra.launcher"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SlurmLauncher" in proc.stdout and "partition: gpu" in proc.stdout


# --- DDP over 2 CPU processes matches one process ----------------------------------------------------------


def _rank_main(out: Path, devices: int, batch: int, steps: int) -> None:
    """One rank: a tiny Llama token classifier trained `steps` steps through the real module, sampler,
    callbacks and Trainer factory; rank 0 writes the loss on every window afterwards."""
    import lightning as L
    from torch.utils.data import DataLoader
    from transformers import LlamaConfig, LlamaForTokenClassification

    from clinical_ner.approaches.tokencls.datamodule import WindowDataset
    from clinical_ner.approaches.tokencls.module import TokenClsModule
    from clinical_ner.data.batching import PadCollator
    from clinical_ner.training.fit import finetune_trainer, make_callbacks

    torch.set_num_threads(1)
    trainer_group = "trainer=ddp" if devices > 1 else "trainer=default"
    cfg = compose_config(
        [trainer_group, "trainer.accelerator=cpu", f"trainer.devices={devices}", f"trainer.max_steps={steps}"]
        + ["trainer.precision=32-true", "logger=none", "trainer.enable_progress_bar=false"]
    )
    generator = torch.Generator().manual_seed(0)
    # equal lengths, every token labelled: the mean of the ranks' mean losses is then the global mean loss
    windows = [
        SimpleNamespace(
            input_ids=torch.randint(1, 64, (12,), generator=generator).tolist(),
            labels=torch.randint(0, 5, (12,), generator=generator).tolist(),
        )
        for _ in range(96)
    ]

    class Windows(L.LightningDataModule):
        def train_dataloader(self):
            # built after the process group exists, so the sampler knows its rank
            sampler = LengthGroupedBatchSampler([12] * len(windows), batch, seed=0, mega_batch_factor=2)
            return DataLoader(WindowDataset(windows), batch_sampler=sampler, collate_fn=PadCollator(0))

    L.seed_everything(0, verbose=False)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=5,
        pad_token_id=0,
        classifier_dropout=0.0,  # the head's dropout would draw different masks in 1 and 2 processes
    )
    model = LlamaForTokenClassification(config)
    module = TokenClsModule(
        model, OptimSpec(partial(torch.optim.AdamW), 1e-2, 0.0, 1.0), lambda p: {}, pad_id=0
    )
    callbacks, _, timer = make_callbacks(cfg, out)
    trainer = finetune_trainer(cfg, out, callbacks, None)
    # as the CLI does: destroy the process group before exit (a rank exiting with gloo's threads alive aborts)
    with scope.process_group_scope():
        trainer.fit(module, datamodule=Windows())
    if trainer.is_global_zero:
        batch_all = PadCollator(0)(list(WindowDataset(windows)))
        model.eval()
        with torch.no_grad():
            loss = model(input_ids=batch_all["input_ids"], labels=batch_all["labels"]).loss.item()
        result = {
            "loss": loss,
            "steps": trainer.global_step,
            "tokens": timer.total_tokens,
            "world": trainer.world_size,
        }
        (out / "result.json").write_text(json.dumps(result))


def _train(out: Path, devices: int, batch: int, steps: int) -> dict:
    out.mkdir(parents=True)
    command = [sys.executable, __file__, str(out), str(devices), str(batch), str(steps)]
    base = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}  # + composing
    if devices > 1:  # one process per device, started by torchrun
        command[1:1] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={devices}"]
    proc = subprocess.run(command, env=base, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path):
    steps = 8
    one = _train(tmp_path / "one", devices=1, batch=8, steps=steps)
    two = _train(tmp_path / "two", devices=2, batch=4, steps=steps)
    assert (one["world"], two["world"]) == (1, 2)
    assert one["steps"] == two["steps"] == steps
    assert one["tokens"] == two["tokens"]  # the timer's count is summed over ranks
    assert abs(one["loss"] - two["loss"]) / one["loss"] < 1e-3, (one, two)
    print(f"loss after {steps} steps: 1 process {one['loss']:.6f}, 2 processes {two['loss']:.6f}")


# --- the command line: one job, one run folder ----------------------------------------------------------


def _cli(
    args: list[str], tmp_path: Path, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CLINICAL_NER_CACHE": str(tmp_path / "cache"),
        "WANDB_MODE": "offline",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "clinical_ner.train", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=timeout,
    )


@pytest.mark.slow
def test_ddp_run_writes_one_run_folder(tmp_path):
    proc = _cli(
        [
            "data=synthetic",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_steps=4",
        ]
        + [*TINY, *QUIET, f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = sorted(tmp_path.rglob("results.json"))
    assert found == [tmp_path / "run" / "results.json"]
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()
    results = json.loads(found[0].read_text())
    assert results["status"] == "complete" and results["train"]["devices"] == 2
    assert results["train"]["steps"] == 4
    assert len(list((tmp_path / "run" / "predictions" / "test").glob("*.ann"))) == 20
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def _torchrun(
    args: list[str], tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m clinical_ner.train ARGS` (a tiny DDP job on CPU)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--monitor_interval=0.5"]
    overrides = [
        "data=synthetic",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *TINY,
        *QUIET,
    ]
    env = {
        **os.environ,
        "CLINICAL_NER_CACHE": str(tmp_path / "cache"),
        "WANDB_MODE": "offline",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, *launcher, "-m", "clinical_ner.train", *overrides, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )


@pytest.mark.slow
def test_torchrun_job_writes_one_run_folder(tmp_path):
    # every rank goes through Hydra (pinned run folder); rank 0 alone writes it, as Lightning joins torchrun's ranks
    proc = _torchrun(
        ["trainer.max_steps=3", "save_model=false", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(tmp_path.rglob("results.json")) == [tmp_path / "run" / "results.json"]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "complete" and results["train"]["devices"] == 2
    assert results["train"]["steps"] == 3
    assert not [line for line in proc.stderr.splitlines() if line.startswith("error:")]


# a test hook (sitecustomize): rank 1 dies, as if killed, once its process group exists, i.e. mid-training; with
# $DIE_SEED only in the job whose config has that seed (a worker of a local sweep: its config file is an argument)
DIE_IN_TRAINING = """
import os, re, sys, threading, time

def doomed():
    if os.environ.get("RANK") != "1" or not os.environ.get("DIE_IN_TRAINING"):
        return False
    if "DIE_SEED" not in os.environ:
        return True
    if "--output-dir" not in sys.argv:
        return False
    config = open(sys.argv[sys.argv.index("--output-dir") - 1]).read()
    return re.search(rf"^seed: {os.environ['DIE_SEED']}$", config, re.MULTILINE) is not None

def initialized():
    try:  # torch.distributed may still be half imported
        return sys.modules["torch.distributed"].is_initialized()
    except (KeyError, AttributeError):
        return False

def die():
    while not initialized():
        time.sleep(0.05)
    print("rank 1 dies on purpose", flush=True)
    os._exit(1)

if doomed():
    threading.Thread(target=die, daemon=True).start()
"""


def _die_in_training(tmp_path: Path, **env: str) -> dict[str, str]:
    """The environment that makes rank 1 die mid-training (DIE_IN_TRAINING)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DIE_IN_TRAINING)
    return {"PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]), "DIE_IN_TRAINING": "1", **env}


@pytest.mark.slow
def test_a_dead_rank_brings_a_torchrun_job_down_with_one_line(tmp_path):
    env = _die_in_training(tmp_path)
    started = time.monotonic()
    proc = _torchrun(
        ["trainer.max_steps=50", "save_model=false", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, env
    )
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert time.monotonic() - started < 600  # torchrun's agent stopped rank 0: no wait for a timeout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "RankFailed" in errors[0], proc.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("RankFailed: ")


@pytest.mark.slow
def test_ddp_sweep_runs_each_cell_once(tmp_path):
    # two DDP jobs in one Hydra process: the second must get fresh ranks, port and process group
    proc = _cli(
        ["-m", "data=synthetic", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
        + ["trainer.max_steps=2", "seed=1,2", "save_model=false", *TINY, *QUIET]
        + [f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = sorted(tmp_path.rglob("results.json"))
    assert [p.parent.parent for p in found] == [tmp_path / "sweep"] * 2, found
    assert all(json.loads(p.read_text())["status"] == "complete" for p in found)


@pytest.mark.slow
def test_a_dead_rank_fails_its_cell_and_the_sweep_goes_on(tmp_path):
    proc = _cli(
        ["-m", "data=synthetic", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
        + ["trainer.max_steps=2", "seed=1,2", "save_model=false", *TINY, *QUIET]
        + [f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        tmp_path,
        env=_die_in_training(tmp_path, DIE_SEED="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {}
    for path in (tmp_path / "sweep").rglob("results.json"):
        record = json.loads(path.read_text())
        records[record["seed"]] = (path.parent, record)
    (dead_cell, dead), (good_cell, good) = records[1], records[2]
    assert dead["status"] == "failed" and dead["error"].startswith("RankFailed: rank 1 exited with code 1")
    assert "rank 1 dies on purpose" in dead["error"]  # the dead rank's log tail
    assert good["status"] == "complete" and good["train"]["devices"] == 2
    assert "1 complete, 1 failed" in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(dead_cell) in errors[0]
    # ranks > 0 leave after training: rank 0 alone predicts and scores
    assert "rank 1: training done; rank 0 predicts" in (good_cell / "ranks" / "rank-1.log").read_text()


def test_fsdp_on_cpu_fails_fast_with_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = _cli(
        ["trainer=fsdp", "trainer.accelerator=cpu", *QUIET, f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
        120,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr and "fsdp" in errors[0]
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "failed"
    assert not (tmp_path / "cache").exists()  # nothing was loaded or trained


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
