"""Several devices, one run: rank-aware batches, DDP equivalent to one process, one run folder per job, and
configs that cannot run fail in seconds. CPU only: DDP over gloo with 2 processes.

Run as a script (`python tests/test_distributed.py OUT DEVICES BATCH STEPS`), this file is one rank of the
loss-equivalence test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from composing import MICRO, compose_train

from clinical_ner.config import compose_config
from clinical_ner.data.batching import LengthGroupedBatchSampler, rank_slice
from clinical_ner.errors import UserError
from clinical_ner.run import ranks
from clinical_ner.training.optim import OptimSpec

ROOT = Path(__file__).resolve().parent.parent
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
    assert ranks.device_count(accelerator, devices) == expected


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
        ranks.check_job(compose_config(overrides))


def test_fsdp_with_lora_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a 2-GPU machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cfg = compose_config(["scale=paper", "trainer=fsdp"])  # the paper recipes are LoRA
    with pytest.raises(UserError, match="use trainer=ddp"):
        ranks.check_distributed(cfg)
    assert ranks.check_distributed(compose_config(["trainer=fsdp"])) == 2  # tiny: full fine-tuning


def test_ddp_config_on_cpu_implies_two_processes():
    cfg = compose_config(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
    assert ranks.check_job(cfg) == 2


def test_a_job_leaves_no_launch_variables_behind(monkeypatch):
    for name in ranks.LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    cfg = compose_config(["trainer.accelerator=cpu"])
    with ranks.job(cfg) as rank_cfg:
        assert rank_cfg is cfg  # one device: nothing started, the run folder is this process's
        os.environ["LOCAL_RANK"] = "0"  # what Lightning's own launcher leaves set
        os.environ["MASTER_PORT"] = "1234"
    assert not any(name in os.environ for name in ranks.LAUNCH_ENV)


def test_ranks_above_zero_of_external_launches_get_a_scratch_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCAL_RANK", "1")  # as torchrun or SLURM would start rank 1
    monkeypatch.delenv("RANK", raising=False)
    cfg = compose_config(["trainer.accelerator=cpu", f"output_dir={tmp_path / 'run'}"])
    with ranks.job(cfg) as rank_cfg:
        assert not ranks.is_global_zero()
        scratch = Path(rank_cfg.output_dir)
        assert scratch != tmp_path / "run" and scratch.is_dir()
    assert not scratch.exists()


def test_resolved_config_round_trips(tmp_path):
    cfg = compose_config(["trainer=ddp", "approach=seq2seq", f"output_dir={tmp_path}"])
    path = tmp_path / "config.yaml"
    path.write_text(ranks.resolved_yaml(cfg))
    loaded = ranks.load_config(path)
    assert loaded == cfg
    assert type(loaded.approach.decoding) is type(cfg.approach.decoding)  # enums back on the typed schema


def _watched(tmp_path: Path, rank_zero: str) -> subprocess.CompletedProcess:
    """A process whose rank 1 dies at once (exit 3) while rank 0 runs `rank_zero` under the watch."""
    script = f"""
import subprocess, sys, time
from pathlib import Path
from clinical_ner.run import ranks
ranks.FAILURE_GRACE_S = 1.0
logs = Path({str(tmp_path)!r})
procs = ranks.start_ranks(lambda r: [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], 2, {{}}, logs)
watch = ranks.RankWatch(procs, logs, lambda m: (logs / "failure.txt").write_text(m))
watch.start()
{rank_zero}
"""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_a_dead_rank_fails_a_hanging_rank_zero_which_goes_on(tmp_path):
    # rank 0 "hangs" (waits in Python); rank 1 dies: rank 0 gets RankFailed and survives, as a sweep must
    proc = _watched(
        tmp_path,
        """
try:
    while True:
        time.sleep(0.05)
except ranks.RankFailed:
    watch.close()
    print("rank 0 failed its job:", watch.failure)
print("the sweep goes on")
""",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rank 0 failed its job: rank 1 exited with code 3" in proc.stdout
    assert "boom" in (tmp_path / "rank-1.log").read_text()
    assert "the sweep goes on" in proc.stdout
    assert not (tmp_path / "failure.txt").exists()  # the job records it, not the watch


def test_a_rank_zero_stuck_where_python_cannot_interrupt_it_is_ended(tmp_path):
    # the last resort: rank 0 never runs Python again (a blocking C call), so the watch records and exits
    proc = _watched(tmp_path, "time.sleep(60)")
    assert proc.returncode == 3
    assert "rank 1 exited with code 3" in (tmp_path / "failure.txt").read_text()
    assert proc.stderr.strip().splitlines()[-1].startswith("error: rank 1 exited with code 3")


def test_ranks_exit_when_rank_zero_is_killed(tmp_path):
    child = "from clinical_ner.run.ranks import exit_with_parent; exit_with_parent(0.1); import time; "
    child += "print('started', flush=True); time.sleep(120)"
    script = f"""
import sys, time
from pathlib import Path
from clinical_ner.run import ranks
(proc,) = ranks.start_ranks(lambda r: [sys.executable, "-c", {child!r}], 2, {{}}, Path({str(tmp_path)!r}))
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
        parent.send_signal(signal.SIGKILL)  # rank 0 dies without cleaning up
        parent.wait()
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break  # gone (reaped by init)
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("rank 1 outlived rank 0")
    finally:
        parent.kill()


def test_rendezvous_ports_are_distinct_and_stay_bound_until_the_job_ends():
    stores: list = [None] * 8

    def host(i: int) -> None:
        stores[i] = ranks.host_rendezvous()

    threads = [threading.Thread(target=host, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ports = [store.port for store in stores]
    assert len(set(ports)) == len(ports)  # concurrent jobs never share a port
    for port in ports:  # nothing else can take the port while the job holds it
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(OSError):
            sock.bind(("127.0.0.1", port))
    # a rank joins as a client on that port, as torch's rendezvous does with launch_env's variables
    env = ranks.launch_env(2, ports[0])
    assert env["MASTER_PORT"] == str(ports[0]) and env["TORCHELASTIC_USE_AGENT_STORE"] == "True"
    client = torch.distributed.TCPStore("127.0.0.1", ports[0], None, False, timedelta(seconds=10))
    client.set("ready", "1")
    assert stores[0].get("ready") == b"1"


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
        ranks.check_distributed(
            compose_config(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
        )
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert ranks.check_distributed(compose_config(["trainer=ddp", "trainer.accelerator=cpu"])) == 2
    assert ranks.externally_launched() and ranks.global_rank() == 1


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
    with ranks.process_group_scope():
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
    base = {**os.environ, "PYTHONPATH": str(ROOT)}
    if devices == 1:
        subprocess.run(command, check=True, env=base, capture_output=True, timeout=600)
    else:
        store = ranks.host_rendezvous()  # this process hosts the store, as rank 0 of a job does
        env = {**base, **ranks.launch_env(devices, store.port)}
        procs = [
            subprocess.Popen(
                command,
                env={**env, "LOCAL_RANK": str(r)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for r in range(devices)
        ]
        errors = [p.communicate(timeout=600)[1].decode(errors="replace") for p in procs]
        assert all(p.returncode == 0 for p in procs), errors[0][-3000:] + errors[-1][-3000:]
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


# a test hook: rank 1 of a local multi-process job exits at start-up when its config's seed is $DIE_SEED
DIE_ON_SEED = """
import os, re, sys
if os.environ.get("LOCAL_RANK") == "1" and os.environ.get("DIE_SEED") and "--output-dir" in sys.argv:
    config = open(sys.argv[sys.argv.index("--output-dir") - 1]).read()
    if re.search(rf"^seed: {os.environ['DIE_SEED']}$", config, re.MULTILINE):
        print("rank 1 dies on purpose", flush=True)
        os._exit(1)
"""


@pytest.mark.slow
def test_a_dead_rank_fails_its_cell_and_the_sweep_goes_on(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DIE_ON_SEED)
    proc = _cli(
        ["-m", "data=synthetic", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
        + ["trainer.max_steps=2", "seed=1,2", "save_model=false", *TINY, *QUIET]
        + [f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        tmp_path,
        env={"PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]), "DIE_SEED": "1"},
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
