"""Progress bars on a terminal, none elsewhere: the real commands run on a pseudo-terminal, then with stderr
redirected to a file (as in a sweep or CI), and their output is searched for tqdm bars."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from composing import compose_train

from clinical_ner.console import progress
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.run.pipeline import run

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
SMALL = [
    "data=synthetic",
    "trainer.threads=1",
    "scale.hidden_size=32",
    "scale.intermediate_size=64",
    "scale.num_layers=1",
    "scale.num_heads=2",
    "scale.vocab_size=400",
]
# tqdm's "<desc>: <percent>%|<bar>| n/total [elapsed<remaining" (Lightning's bars have the same layout; byte
# counts are scaled: 1.23M/4.56M)
BAR = r"(?P<desc>[^\r\n|]*?): *\d+%\|[^|\r\n]*\| *[\d.]+[kMGT]?/[\d.]+[kMGT]? \[\d\d:\d\d<"


def bars(output: str) -> set[str]:
    """The descriptions of the bars drawn in `output`."""
    return {match["desc"].strip() for match in re.finditer(BAR, output)}


def terminal() -> tuple[int, int]:
    """A pseudo-terminal (leader, follower) of 40 x 120 characters (a new one has no size, and bars that fit
    the width would be drawn 0 characters wide)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    return leader, follower


def on_terminal(command: list[str], env: dict, stderr_file: Path | None = None) -> str:
    """Run `command` with stdout on a pseudo-terminal and stderr there too, or in `stderr_file` (a job whose
    log is captured); what it drew on the terminal, then what it wrote to the file."""
    leader, follower = terminal()
    with open(stderr_file or os.devnull, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower if stderr_file is None else log,
        )
        os.close(follower)
        chunks, deadline = [], time.monotonic() + 300
        try:
            while time.monotonic() < deadline:  # read as it comes: a full terminal would block the child
                if not select.select([leader], [], [], 1.0)[0]:
                    if process.poll() is not None:
                        break
                    continue
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(leader)
            process.kill() if process.poll() is None else None
    output = b"".join(chunks).decode(errors="replace")
    output += stderr_file.read_text(errors="replace") if stderr_file else ""
    assert process.wait(timeout=30) == 0, output[-3000:]
    return output


def in_terminal(command: list[str], env: dict) -> str:
    """What `command` drew with stdout and stderr on a pseudo-terminal."""
    return on_terminal(command, env)


def stderr_to_file(command: list[str], env: dict, folder: Path) -> str:
    """What `command` drew with stdout on a pseudo-terminal and stderr redirected to a file."""
    return on_terminal(command, env, folder / "stderr.log")


def predict_command(run_dir: Path, notes_dir: Path, out: Path) -> list[str]:
    """`python -m clinical_ner.predict RUN NOTES --out OUT`."""
    return [sys.executable, "-m", "clinical_ner.predict", str(run_dir), str(notes_dir), "--out", str(out)]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    return {**os.environ, "CLINICAL_NER_CACHE": str(tmp_path_factory.mktemp("cache"))}


def train_command(run_dir: Path, corpora: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "clinical_ner.train",
        "debug=fdr",
        "approach=seq2seq",
        "corpus=es",
        f"corpus.root={corpora}",
        "save_model=true",
        *SMALL,
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def notes(folder: Path) -> Path:
    """Two synthetic notes to tag."""
    folder.mkdir()
    for doc in synthetic_splits()["test"][:2]:
        (folder / f"{doc.id}.txt").write_text(doc.text, encoding="utf-8")
    return folder


@pytest.mark.slow
def test_training_and_predict_draw_bars_on_a_terminal(tmp_path, env):
    from test_pretrain import write_corpora

    corpora = write_corpora(tmp_path / "corpora")
    drawn = in_terminal(train_command(tmp_path / "run", corpora), env)
    # the pretraining has its bar: between its first and last log lines
    pretraining = drawn[drawn.index("pretraining ") : drawn.index("pretrain: ")]
    assert bars(pretraining), pretraining[-2000:]
    after = drawn[drawn.index("pretrain: ") :]
    assert "Epoch 0" in bars(after)  # fine-tuning (Lightning's TQDMProgressBar)
    assert "test: generating" in bars(after)  # seq2seq test-set generation
    tagged = in_terminal(predict_command(tmp_path / "run", notes(tmp_path / "in"), tmp_path / "out"), env)
    assert "generating" in bars(tagged)


@pytest.mark.slow
def test_predict_tags_under_a_bar_for_token_classification(tmp_path, env):
    where = [f"output_dir={tmp_path / 'run'}", f"cache_dir={env['CLINICAL_NER_CACHE']}"]
    cfg = compose_train([*SMALL, "debug=fdr", "save_model=true", *where])
    assert run(cfg)["status"] == "complete"
    tagged = in_terminal(predict_command(tmp_path / "run", notes(tmp_path / "in"), tmp_path / "out"), env)
    assert "tagging" in bars(tagged)


@pytest.mark.slow
def test_no_bars_when_stderr_is_not_a_terminal(tmp_path, env):
    from test_pretrain import write_corpora

    corpora = write_corpora(tmp_path / "corpora")
    output = stderr_to_file(train_command(tmp_path / "run", corpora), env, tmp_path)
    assert "pretrain: " in output and "results: " in output  # it ran and printed its log ...
    assert bars(output) == set()  # ... without a bar, on stdout (Lightning's) or stderr (ours)
    command = predict_command(tmp_path / "run", notes(tmp_path / "in"), tmp_path / "out")
    output = stderr_to_file(command, env, tmp_path)
    assert "tagged 2 documents" in output and bars(output) == set()


def test_wanted_follows_stderr_unless_forced(monkeypatch):
    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert progress.wanted(None) and progress.wanted(True) and not progress.wanted(False)
    monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))  # noqa: SIM115
    assert not progress.wanted(None) and progress.wanted(True)


@pytest.mark.parametrize("on_terminal", [True, False], ids=["terminal", "file"])
def test_release_download_draws_a_bar_on_a_terminal_only(tmp_path, env, on_terminal):
    from local_server import local_server, send
    from test_pharmaconer_data import _md5, make_release_zip

    source = make_release_zip(tmp_path / "source.zip")

    def release(handler):
        send(handler, 200, source.read_bytes())

    with local_server(release) as (base, _):
        command = [sys.executable, "-m", "clinical_ner.data.pharmaconer", "--out", str(tmp_path / "corpus")]
        command += ["--url", f"{base}/pharmaconer.zip", "--md5", _md5(source)]
        run_it = in_terminal if on_terminal else lambda c, e: stderr_to_file(c, e, tmp_path)
        output = run_it(command, env)
    assert "unpacked into" in output
    assert ("pharmaconer.zip" in bars(output)) is on_terminal


def drawn_on(leader: int) -> str:
    """What was written to a pseudo-terminal so far."""
    chunks = []
    while select.select([leader], [], [], 0.2)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_corpus_download_draws_a_bar_on_a_terminal(tmp_path, monkeypatch):
    from local_server import local_server
    from test_download import _route

    import clinical_ner.data.download as download

    leader, follower = terminal()
    with local_server(_route) as (base, _), os.fdopen(follower, "w") as tty:
        monkeypatch.setattr(download, "DAILYMED_API", f"{base}/dailymed")
        monkeypatch.setattr(sys, "stderr", tty)
        download.main(["dailymed", "--limit", "3", "--out", str(tmp_path), "--delay", "0"])
    drawn = drawn_on(leader)
    os.close(leader)
    assert "dailymed" in bars(drawn)


def test_without_a_terminal_a_long_job_logs_where_it_is(monkeypatch, caplog):
    caplog.set_level("INFO", logger="clinical_ner.console.progress")
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.0)  # every update
    for _ in progress.bar(range(4), desc="test: generating", unit="unit", enabled=False):
        pass
    lines = [r.getMessage() for r in caplog.records]
    assert "test: generating: 2/4 unit (50%)" in " ".join(lines) and all("left" in line for line in lines)
    assert all(line.strip() for line in lines)  # the closing blank is not logged
    caplog.clear()
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 60.0)
    for _ in progress.bar(range(4), desc="short", enabled=False):  # done before the first line is due
        pass
    assert not caplog.records


def test_without_a_terminal_training_logs_its_steps(caplog):
    import lightning as L
    import torch

    from clinical_ner.training.callbacks import ProgressLines, progress_bars

    assert isinstance(progress_bars(False)[1][0], ProgressLines)

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(6, 2)), batch_size=2)
    caplog.set_level("INFO", logger="clinical_ner.training.callbacks")
    trainer = L.Trainer(
        max_epochs=2, callbacks=[ProgressLines(every=0.0)], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Tiny(), data)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fit: step")]
    assert lines[0].startswith("fit: step 1 of 6 (17%), epoch 0") and "left" in lines[0]
    assert lines[-1].startswith("fit: step 6 of 6 (100%), epoch 1")
