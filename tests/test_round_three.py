"""Issue 27: one run per output folder (the lock, the README's first command run twice), one clear line for the
last raw errors, and the first hour's rough edges. Each test names the case of the issue it covers."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

EXAMPLES = ROOT / "examples"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
       "PYTHONUNBUFFERED": "1"}
ENV.pop("ARENA_DEBUG", None)
TINY = ["--model_name_or_path", "embedded:tiny-deberta", "--max_length", "32", "--eval_strategy", "no",
        "--disable_tqdm", "true", "--report_to", "none"]


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


def one_line_error(capsys, argv: list[str]) -> str:
    """train.main(argv) must end with exit status 1 and one `train.py: error:` line, no traceback."""
    from arena_preference import train

    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1, err[-2000:]
    assert "Traceback" not in err
    line = last_line(err)
    assert line.startswith("train.py: error: "), err[-2000:]
    return line


# ----------------------------------------------------------------------------------------- one run per folder
# A process that takes the output-folder lock, says so, and waits to be killed.
HOLD_LOCK = """
import sys, time
sys.path.insert(0, {root!r})
from arena_preference.run_folder import OutputFolderLock
lock = OutputFolderLock({folder!r}).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def _holder(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK.format(root=str(ROOT), folder=str(folder))],
                               stdout=subprocess.PIPE, text=True, env=ENV)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_two_train_runs_started_at_once_into_one_folder_one_runs_and_the_other_is_refused(tmp_path):
    """The failure of issue 27: both exited 0 and the folder mixed their files. Now the second run to reach the
    folder is refused, naming the folder and the process that holds it; the first one's files are whole."""
    folder = tmp_path / "shared"
    argv = [*TINY, "--train_file", str(EXAMPLES / "train.jsonl"), "--test_file", str(EXAMPLES / "test.csv"),
            "--do_train", "--do_predict", "--save_strategy", "no", "--max_steps", "40", "--output_dir", str(folder)]
    runs = [subprocess.Popen([sys.executable, str(ROOT / "train.py"), *argv], cwd=ROOT, env=ENV, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [(run.pid, *run.communicate(timeout=600), run.returncode) for run in runs]
    codes = sorted(code for *_, code in results)
    assert codes == [0, 1], [err[-1500:] for _, _, err, _ in results]
    (winner, *_), (_, _, refused, _) = sorted(results, key=lambda r: r[3])
    line = last_line(refused)
    assert line.startswith(f"train.py: error: --output_dir {folder} is in use by another run: process {winner} ")
    assert "Traceback" not in refused
    assert not (folder / ".arena-run.lock").exists()  # released on exit
    from arena_preference.run_folder import read_record

    assert read_record(folder)["finished"] is True
    assert (folder / "predictions.csv").is_file() and (folder / "model.safetensors").is_file()


def test_a_lock_held_by_a_live_process_is_refused_and_one_left_by_sigkill_is_taken_over(tmp_path, caplog):
    from arena_preference.run_folder import LOCK_NAME, OutputFolderLock, UserError

    folder = tmp_path / "run"
    holder = _holder(folder)
    try:
        with pytest.raises(UserError, match=rf"--output_dir {folder} is in use by another run: process "
                                            rf"{holder.pid} \("):
            OutputFolderLock(folder).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (folder / LOCK_NAME).exists()  # SIGKILL leaves the file; the kernel dropped the flock
    with caplog.at_level(logging.WARNING, logger="train"):
        with OutputFolderLock(folder):
            assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"took over the lock left by process {holder.pid}" in caplog.text and "no longer running" in caplog.text
    assert not (folder / LOCK_NAME).exists()


def test_a_live_holder_is_respected_where_the_filesystem_ignores_flock(tmp_path):
    """Pid liveness backs flock up: a lock file naming a live process of this host (same pid and start time) is
    refused even when no flock is held on it (flock is a no-op on some network filesystems)."""
    from arena_preference.run_folder import LOCK_NAME, OutputFolderLock, UserError, _process_start

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tmp_path / "run"
        folder.mkdir()
        import socket

        (folder / LOCK_NAME).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                     "start": _process_start(sleeper.pid), "program": "train.py",
                                                     "started": "then"}))
        with pytest.raises(UserError, match=f"process {sleeper.pid} \\(train.py, started then"):
            OutputFolderLock(folder).acquire()
        # the same record with another start time: the pid was reused by an unrelated process -> taken over
        (folder / LOCK_NAME).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                     "start": "1", "program": "train.py"}))
        OutputFolderLock(folder).acquire().release()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_readme_first_command_run_twice_replaces_its_own_run_and_nothing_else(tmp_path, monkeypatch, capsys):
    """`python train.py` with no --output_dir, run again as written, replaces its own finished run in the default
    folder (with a warning); another command into that folder, or any run into a folder named with --output_dir,
    is refused as before."""
    from arena_preference import train

    monkeypatch.chdir(tmp_path)
    argv = [*TINY, "--max_steps", "1", "--save_strategy", "no"]  # no --output_dir: out/arena-tiny-deberta
    train.main(argv)
    folder = tmp_path / "out" / "arena-tiny-deberta"
    (folder / "stale.txt").write_text("left by the first run")  # replaced means emptied first
    capsys.readouterr()
    train.main(argv)  # logs through train.py's own handler (basicConfig(force=True)), on stderr
    assert "holds a finished run of this same command (no --output_dir given): replacing it" in capsys.readouterr().err
    assert (folder / "model.safetensors").is_file() and not (folder / "stale.txt").exists()
    line = one_line_error(capsys, [*argv, "--seed", "3"])  # another command: not the same job
    assert "already holds another run's files" in line
    named = [*argv, "--output_dir", str(tmp_path / "named")]
    train.main(named)
    assert "already holds another run's files" in one_line_error(capsys, named)


def test_an_unfinished_default_run_is_not_replaced(tmp_path, monkeypatch, capsys):
    from arena_preference import train
    from arena_preference.run_folder import RECORD_NAME, read_record

    monkeypatch.chdir(tmp_path)
    argv = [*TINY, "--max_steps", "1", "--save_strategy", "no"]
    train.main(argv)
    folder = tmp_path / "out" / "arena-tiny-deberta"
    (folder / RECORD_NAME).write_text(json.dumps({**read_record(folder), "finished": False}))  # killed mid-run
    assert "already holds another run's files" in one_line_error(capsys, argv)


# ---------------------------------------------------------------------------------------- raw messages, 1 to 8
def test_resuming_a_classify_checkpoint_with_head_rank_is_refused_in_words(tmp_path, capsys):
    """Case 3: torch's "loaded state dict contains a parameter group that doesn't match" becomes one line."""
    from arena_preference import train

    folder = tmp_path / "run"
    base = [*TINY, "--train_file", str(EXAMPLES / "train.jsonl"), "--do_train", "--max_steps", "2",
            "--save_steps", "1", "--output_dir", str(folder)]
    train.main(base)
    line = one_line_error(capsys, [*base, "--max_steps", "4", "--head", "rank", "--resume_from_checkpoint", "latest"])
    assert "that checkpoint is of another model (head='classify' there, 'rank' here)" in line
    assert "(--head classify)" in line and "parameter group" not in line
    train.main([*base, "--max_steps", "3", "--resume_from_checkpoint", "latest"])  # the same model resumes


def test_a_data_file_with_no_action_says_there_is_nothing_to_do(capsys):
    """Case 8: `--train_file x.csv --do_eval false` exited 0 having done nothing."""
    line = one_line_error(capsys, [*TINY, "--train_file", str(EXAMPLES / "train.jsonl"), "--do_eval", "false"])
    assert "nothing to do: --do_eval false leaves --do_train, --do_eval and --do_predict all off" in line
    assert "add --do_train" in line


# ----------------------------------------------------------------------------------------- first-hour edges
def test_short_help_lists_data_output_and_actions_before_model_options_and_says_push_is_once():
    from arena_preference.training_arguments import ArenaArgumentParser

    text = ArenaArgumentParser().format_help()
    order = [text.index(f"\n  --{name} ") for name in ("train_file", "output_dir", "do_train", "do_predict",
                                                        "model_name_or_path")]
    assert order == sorted(order)
    assert text.count("\n  --output_dir ") == 1
    full = ArenaArgumentParser().format_full_help()
    for shown in (text, " ".join(full.split())):
        assert "once, at the end of the run" in " ".join(shown.split()) and "every time the model is saved" not in \
            " ".join(shown.split())
    assert "Not directly used by Trainer" not in text
