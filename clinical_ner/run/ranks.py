"""Several devices in one run: one Hydra job, one run folder, N processes (DDP or FSDP).

How a job with N > 1 devices on one node runs (`job()`, used by `clinical_ner.train.main`):

- The Hydra process is rank 0. Before anything heavy it checks the config (`check_job`: a mistake fails
  once, in a second, instead of N times after loading a model), then starts ranks 1..N-1 as plain
  subprocesses, `python -m clinical_ner.run.ranks CONFIG --output-dir SCRATCH`, with the torchrun-style
  variables Lightning reads (`LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`, `NODE_RANK`); with
  `LOCAL_RANK` set, Lightning joins them instead of launching processes itself.
- The rendezvous store is hosted by rank 0 for the whole job on a port the system picks and that stays bound
  (`host_rendezvous`): no other program, and no other job of a parallel sweep, can take the port or join the job.
  Every rank, rank 0 included, joins it as a client, as under torchrun (`TORCHELASTIC_USE_AGENT_STORE`).
- The other ranks never go through Hydra: they read rank 0's resolved config, so they cannot make run
  folders of their own (Lightning's own launcher re-runs the command line, which under `-m` would re-run the
  whole sweep in every rank), and they write into a scratch folder that is deleted at the end. Rank 0 alone
  writes the run folder: results.json, predictions, model, the W&B run (Lightning loggers are rank-zero).
- Every rank runs the same stage code, so collectives stay in step: the training batches are sharded by the
  rank-aware `LengthGroupedBatchSampler`; validation runs in full on every rank (dev F1 is then identical
  everywhere, so every rank agrees on the best checkpoint; FSDP needs all ranks in a forward). After
  training, rank 0 alone predicts, scores and saves; the other ranks are done.
- A rank that dies fails the job on rank 0 (`RankFailed`: the cell is recorded as failed, a sweep goes on)
  instead of hanging it: before training, rank 0 waits for the others in Python (training/rank_sync.py),
  where a dead rank is noticed; during training the watch (`RankWatch`) stops the others, aborts the process
  group and raises in rank 0. Ranks > 0 exit when rank 0's process dies (`exit_with_parent`).
- At the end the process group is destroyed and the launch variables restored, so the next job of a `-m`
  sweep (same Hydra process) starts clean.

Processes started by something else (SLURM tasks, torchrun) are used as they are: then every process runs
`main`, and ranks > 0 are redirected to a scratch folder the same way (`hydra/launcher=slurm` starts one task
per device).
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from clinical_ner.config import listed_gpu_ids
from clinical_ner.errors import EXIT_USER_ERROR, UserError
from clinical_ner.run_folder import RANK_LOG, RunFolder
from clinical_ner.training import rank_sync
from clinical_ner.training.rank_sync import RENDEZVOUS_TIMEOUT, LocalLaunch, RankFailed, dead_rank
from clinical_ner.training.rank_zero import global_rank, is_global_zero

log = logging.getLogger(__name__)

# variables a launch sets (ours or Lightning's); restored after each job so sweep jobs do not inherit them
LAUNCH_ENV = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "NODE_RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "OMP_NUM_THREADS",
    "TORCHELASTIC_USE_AGENT_STORE",
)
PARENT_PID_ENV = "CLINICAL_NER_PARENT_PID"  # ranks > 0 exit when this process is gone
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "fsdp")
FAILURE_GRACE_S = 20.0  # after a rank dies, how long rank 0 may take to fail by itself before it is stopped
FINISH_TIMEOUT_S = (
    600.0  # after rank 0 is done, how long the others may take to finish their copy of the work
)


def wants_gpu(accelerator: str) -> bool:
    """Whether Lightning will pick CUDA devices for `accelerator`."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def device_count(accelerator: str, devices) -> int:
    """How many processes Lightning runs on this node for (accelerator, devices), as Lightning parses them."""
    gpu = wants_gpu(accelerator)
    ids = listed_gpu_ids(devices)
    if ids is not None:
        return len(ids)
    text = str(devices).strip()
    if text == "auto":
        return torch.cuda.device_count() if gpu else 1
    try:
        count = int(text)
    except ValueError:
        raise UserError(f"devices={devices!r}: expected a count, a list of GPU ids or auto") from None
    if count == -1 and gpu:
        return torch.cuda.device_count()
    if count < 1:
        raise UserError(f"devices={devices!r}: expected a positive count (-1 = every GPU)")
    return count


def externally_launched() -> bool:
    """True when the processes were started by a launcher (SLURM tasks, torchrun, or us): join, do not spawn."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    return "LOCAL_RANK" in os.environ or SLURMEnvironment.detect() or TorchElasticEnvironment.detect()


def check_strategy(strategy: str, accelerator: str, devices, what: str) -> int:
    """Fail fast on a strategy Lightning would reject late; returns the process count it implies."""
    if strategy not in STRATEGIES:
        raise UserError(
            f"{what}.strategy={strategy}: expected one of {', '.join(STRATEGIES)} "
            "(spawn-based strategies cannot pickle a Hydra job)"
        )
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"{what}.accelerator={accelerator} but no CUDA GPU is visible")
    count = device_count(accelerator, devices)
    if strategy == "fsdp" and not wants_gpu(accelerator):
        raise UserError(
            f"{what}.strategy=fsdp needs CUDA GPUs (Lightning's FSDP has no CPU support); "
            f"{what}.accelerator={accelerator}, CUDA available: {torch.cuda.is_available()}"
        )
    if wants_gpu(accelerator) and count > torch.cuda.device_count():
        raise UserError(f"{what}.devices={devices}: only {torch.cuda.device_count()} CUDA GPU(s) visible")
    return count


def check_distributed(cfg: DictConfig) -> int:
    """The distributed settings of both stages, checked before anything loads; returns the process count."""
    t = cfg.trainer
    count = check_strategy(t.strategy, t.accelerator, t.devices, "trainer")
    if t.strategy == "fsdp" and cfg.approach.finetune != "full":
        raise UserError(
            "trainer.strategy=fsdp shards full fine-tuning (approach.finetune=full); LoRA and QLoRA runs fit "
            "on one GPU each: use trainer=ddp"
        )
    if cfg.corpus.name != "none":
        p = cfg.pretrain.trainer
        pretrain_count = check_strategy(p.strategy, p.accelerator, p.devices, "pretrain.trainer")
        if pretrain_count > 1:
            # pretrain/stage.py locks, trains and writes its cache entry in each process it runs in
            raise UserError(
                f"pretrain.trainer.devices={p.devices}: continual pretraining runs on one device for now "
                "(docs/full_scale.md, 'Continual pretraining in a multi-GPU job')"
            )
    from lightning.fabric.plugins.environments import SLURMEnvironment

    # Lightning's SLURM environment takes every task for one rank: there must be one task per device
    tasks = os.environ.get("SLURM_NTASKS_PER_NODE") or os.environ.get("SLURM_NTASKS")
    if SLURMEnvironment.detect() and tasks is not None and int(tasks.split("(")[0]) != count:
        raise UserError(
            f"trainer.devices={t.devices} but SLURM started {tasks} task(s) per node: start one task per "
            "device (--ntasks-per-node; hydra/launcher=slurm sets it from trainer.devices)"
        )
    return count


def check_job(cfg: DictConfig) -> int:
    """Everything that would make every rank fail at once, checked in a second before any process starts:
    strategies and devices, quantization, presence of the weights. Returns the process count."""
    from clinical_ner.models.quantize import check_quantization
    from clinical_ner.models.weights import check_weights

    count = check_distributed(cfg)
    check_quantization(cfg)
    check_weights(cfg)
    return count


def host_rendezvous(timeout: timedelta = RENDEZVOUS_TIMEOUT) -> torch.distributed.TCPStore:
    """The job's rendezvous store, listening on a port the system picked (port 0, read back as `.port`) for as
    long as the store lives, so no other program or job can take the port between its choice and the ranks'
    connection (keep it until the job ends)."""
    return torch.distributed.TCPStore("127.0.0.1", 0, None, True, timeout, wait_for_workers=False)


def resolved_yaml(cfg: DictConfig) -> str:
    """The job's config with every interpolation resolved (`${hydra:...}` exists only in the Hydra process)."""
    return OmegaConf.to_yaml(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)))


def load_config(path: Path | str) -> DictConfig:
    """A resolved config file back onto the typed schema (what ranks > 0 run)."""
    from clinical_ner.config import typed_config

    return typed_config(OmegaConf.to_container(OmegaConf.load(path)))


def with_output_dir(cfg: DictConfig, output_dir: Path) -> DictConfig:
    """A copy of `cfg` that writes into `output_dir`."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.output_dir = str(output_dir)
    return cfg


def start_ranks(
    command: Callable[[int], list[str]], world: int, env: dict[str, str], logs: Path
) -> list[subprocess.Popen]:
    """Start ranks 1..world-1 (`command(rank)`), each with its LOCAL_RANK and its output in `logs`; they know
    this process's id, to exit with it (`exit_with_parent`)."""
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in range(1, world):
        rank_env = {**env, "LOCAL_RANK": str(rank), PARENT_PID_ENV: str(os.getpid())}
        with open(logs / RANK_LOG.format(rank=rank), "wb") as out:  # the child keeps its own handle
            procs.append(subprocess.Popen(command(rank), env=rank_env, stdout=out, stderr=subprocess.STDOUT))
    return procs


def launch_env(world: int, port: int) -> dict[str, str]:
    """The variables of a single-node job of `world` processes (this one being rank 0) whose rendezvous store
    listens on `port` (`host_rendezvous`); every rank joins that store as a client."""
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "NODE_RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": str(world),
        "TORCHELASTIC_USE_AGENT_STORE": "True",  # torch's rendezvous then connects instead of hosting
    }


def exit_with_parent(poll_s: float = 1.0) -> None:
    """In a rank > 0: exit as soon as the process that started it (`PARENT_PID_ENV`) is gone, so a killed
    rank 0 leaves no rank behind (a daemon thread watching the parent id; works wherever the parent dies)."""
    expected = int(os.environ.get(PARENT_PID_ENV, os.getppid()))

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(poll_s)
        os._exit(1)  # the parent is gone: nothing will collect this rank's work

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def raise_in_thread(ident: int, exc_type: type[BaseException]) -> bool:
    """Raise `exc_type` in the thread `ident` as soon as it runs Python code again (CPython's
    PyThreadState_SetAsyncExc); True when the thread was found."""
    found = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))
    return found == 1


def abort_process_group() -> None:
    """Abort this process's process group, if any, so a collective waiting on a dead rank returns (NCCL never
    notices dead peers by itself); best effort, through torch's abort when this version has it."""
    abort = getattr(torch.distributed.distributed_c10d, "_abort_process_group", None)
    if abort is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        with suppress(Exception):
            abort()


class RankWatch(threading.Thread):
    """Watches ranks > 0 while rank 0 (the thread `target`, by default the main thread) runs the job. When one
    dies, rank 0 gets `FAILURE_GRACE_S` to fail by itself (it usually hits the same error, or a collective
    breaks); if it does not, the other ranks are stopped, the process group aborted and `RankFailed` raised in
    rank 0, which records the failure and leaves the job (a sweep goes on). Only when rank 0 is still stuck
    after another grace period, somewhere Python cannot interrupt, is the failure recorded through
    `on_failure(message)` and the process ended (hanging forever would be worse)."""

    def __init__(
        self,
        procs: list[subprocess.Popen],
        logs: Path,
        on_failure: Callable[[str], None],
        target: int | None = None,
    ) -> None:
        super().__init__(daemon=True, name="rank-watch")
        self.procs = procs
        self.logs = logs
        self.on_failure = on_failure
        self.target = target if target is not None else threading.main_thread().ident
        self.done = threading.Event()
        self.lock = threading.Lock()  # `close` vs raising: nothing reaches the target once it has closed
        self.failure: str | None = None  # set once rank 0 has been told to fail

    def run(self) -> None:
        while not self.done.wait(1.0):
            dead = dead_rank(self.procs, self.logs)
            if dead is None:
                continue
            message, code = dead
            log.error(message)
            if self.done.wait(FAILURE_GRACE_S):
                return
            self.failure = message
            stop(self.procs)  # a collective waiting on them then breaks
            abort_process_group()
            for _ in range(2):  # twice: library code may swallow the first one
                with self.lock:
                    if self.done.is_set():
                        return
                    raise_in_thread(self.target, RankFailed)
                if self.done.wait(FAILURE_GRACE_S / 2):
                    return
            self.on_failure(message)
            print(f"error: {message}; rank 0 could not be interrupted, ending it", file=sys.stderr)
            os._exit(code if code > 0 else 1)

    def close(self) -> None:
        """Stop watching (in the target thread). A RankFailed raised just before arrives here, with its
        message; after `close` returns, none can arrive."""
        try:
            with self.lock:
                self.done.set()
        except RankFailed:
            raise RankFailed(self.failure) from None


def stop(procs: list[subprocess.Popen], timeout: float = 0.0) -> list[int | None]:
    """Wait up to `timeout` seconds for the processes, then kill what is left; returns their exit codes."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)  # a rank stuck in a collective ignores SIGTERM
            proc.wait()
    return [proc.returncode for proc in procs]


@contextmanager
def restored_env(names: tuple[str, ...]) -> Iterator[None]:
    """Put `names` back as they were (Lightning's launcher, for one, leaves LOCAL_RANK and friends set)."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def process_group_scope() -> Iterator[None]:
    """Destroy the process group a job created (Lightning keeps it), so the next sweep job makes its own."""
    existed = torch.distributed.is_available() and torch.distributed.is_initialized()
    try:
        yield
    finally:
        if not existed and torch.distributed.is_available() and torch.distributed.is_initialized():
            with suppress(Exception):  # a group aborted after a dead rank may refuse a clean destroy
                torch.distributed.destroy_process_group()


@contextmanager
def job(cfg: DictConfig, on_failure: Callable[[str], None] | None = None) -> Iterator[DictConfig]:
    """Check the config, start the other ranks when this job needs several devices, and yield the config this
    process runs (ranks > 0 of externally started jobs get a scratch output folder). See the module doc."""
    count = check_job(cfg)
    with restored_env(LAUNCH_ENV), process_group_scope():
        if externally_launched():
            if is_global_zero():
                yield cfg
                return
            with tempfile.TemporaryDirectory(prefix=f"clinical_ner-rank{global_rank()}-") as scratch:
                yield with_output_dir(cfg, Path(scratch))
            return
        if count == 1:
            yield cfg
            return
        with _local_ranks(cfg, count, on_failure or (lambda message: None)):
            yield cfg


@contextmanager
def _local_ranks(cfg: DictConfig, world: int, on_failure: Callable[[str], None]) -> Iterator[None]:
    """Ranks 1..world-1 as subprocesses for the duration of the job (rank 0 is this process)."""
    folder = RunFolder(cfg.output_dir)
    folder.root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="clinical_ner-ddp-"))
    config_file = work / "config.yaml"
    config_file.write_text(resolved_yaml(cfg), encoding="utf-8")
    logs = folder.ranks
    log.info("DDP: %d processes (ranks > 0 log to %s)", world, logs)

    def command(rank: int) -> list[str]:
        scratch = work / f"rank-{rank}"
        return [sys.executable, "-m", __name__, str(config_file), "--output-dir", str(scratch)]

    store = host_rendezvous()
    env = launch_env(world, store.port)
    os.environ.update(env)
    procs = start_ranks(command, world, {**os.environ, **env}, logs)
    watch = RankWatch(procs, logs, on_failure)
    rank_sync.launch = LocalLaunch(store, world, procs, logs, on_done=watch.close)
    watch.start()
    ok = False
    try:
        yield
        ok = True
    except BaseException as err:
        watch.close()
        cause = _failure_cause(err, watch, procs, logs)
        if cause is None:
            raise
        raise RankFailed(cause) from (None if isinstance(err, RankFailed) else err)
    finally:
        watch.close()
        rank_sync.launch = None
        # after a success the others are finishing (they skip inference); after a failure they are stopped
        codes = stop(procs, FINISH_TIMEOUT_S if ok else 0.0)
        shutil.rmtree(work, ignore_errors=True)
        bad = [(rank, code) for rank, code in enumerate(codes, 1) if code != 0]
        if ok and bad:
            log.warning("ranks finished with errors after rank 0 completed: %s (see %s)", bad, logs)


def _failure_cause(
    err: BaseException, watch: RankWatch, procs: list[subprocess.Popen], logs: Path
) -> str | None:
    """Why rank 0 failed when a dead rank > 0 is the cause (a broken collective is only the symptom), else None:
    rank 0's own error (a user error, a crash of its own) is kept."""
    if watch.failure is not None:
        return watch.failure
    if isinstance(err, RankFailed):
        return str(err)
    if isinstance(err, UserError) or not isinstance(err, Exception):
        return None
    deadline = time.monotonic() + 2.0  # a rank that died first has exited by now
    while (dead := dead_rank(procs, logs)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return None if dead is None else dead[0]


def worker_main(argv: list[str] | None = None) -> int:
    """A rank > 0 of a local multi-device job: run the stages on rank 0's resolved config, write nothing that
    stays (its output folder is scratch)."""
    parser = argparse.ArgumentParser(description=worker_main.__doc__)
    parser.add_argument("config", type=Path)
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    exit_with_parent()
    rank = os.environ.get("LOCAL_RANK", "?")
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = with_output_dir(load_config(args.config), args.output_dir)
    store = torch.distributed.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), None, False, RENDEZVOUS_TIMEOUT
    )
    rank_sync.launch = LocalLaunch(store, int(os.environ["WORLD_SIZE"]))
    from clinical_ner.run.pipeline import run

    try:
        run(cfg)
    except UserError as err:
        print(f"error: rank {rank}: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
