"""The run's output folder and the files in it: `UserError` (a problem with what the user asked for, reported in
one line), `write_atomically`, the rule that a run owns its output folder (`claim_output_dir`), and the lock that
keeps a second run out of it while the first one runs (`OutputFolderLock`).
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock falls back to the holder's pid alone (see OutputFolderLock)
    fcntl = None

logger = logging.getLogger("train")


class UserError(Exception):
    """A problem with what the user asked for; reported in one line, without a traceback."""


# The run's own bookkeeping inside its output folder. Hidden names: the push (`.*` ignored), a Space copy and the
# ownership check all leave them out.
LOCK_NAME = ".arena-run.lock"  # held (flock) for the whole run; names the process that holds it
RECORD_NAME = ".arena-run.json"  # which command wrote the folder's run, and whether it finished
RUN_FILES = (LOCK_NAME, RECORD_NAME)


class OutputFolderLock:
    """An exclusive lock on a run's output folder, held from before the ownership check to the end of the run.

    Without it two runs started at once into one empty folder both pass the ownership check (neither has written
    anything yet) and end with one run's model beside the other's predictions. The lock is an advisory `flock` on
    `<folder>/.arena-run.lock`, which the kernel releases when the process dies, SIGKILL included; the file also
    records who holds it (pid, host, start time, program), for the refusal message and to tell a lock left by a
    dead process (taken over, with a warning) from a live one. A live holder on this host (same pid and process
    start time) is respected even where the filesystem does not honour flock (or, on Windows, there is none).

    >>> with OutputFolderLock("out/run"):  # doctest: +SKIP
    ...     ...  # a second run into out/run is refused with a UserError naming this process
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "OutputFolderLock":
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"--output_dir {self.folder}: is a file, not a folder; choose a folder for the run")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"--output_dir {self.folder}: cannot be created ({err.strerror or err})") from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:  # a read-only folder or disk: nothing of the run could be written there
                raise UserError(f"--output_dir {self.folder}: cannot be written ({err.strerror or err}); choose "
                                "a folder you can write to") from None
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise UserError(_in_use(self.folder, holder)) from None
            except OSError as err:
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    os.close(fd)
                    raise
                # A filesystem without flock (some NFS mounts): the holder's pid record below is the lock.
            # The holder we waited on may have removed the file (release) after we opened it: the lock is then on
            # a file no longer at the path, which a third run could create afresh. Only the file at the path counts.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_holder(fd)
        if previous and previous.get("pid") != os.getpid():
            if _is_alive(previous):  # flock not honoured here (some network filesystems): trust the record
                os.close(fd)
                raise UserError(_in_use(self.folder, previous))
            logger.warning("%s: took over the lock left by process %s (%s, started %s on %s), which is no longer "
                           "running (killed?)", self.folder, previous.get("pid"), previous.get("program"),
                           previous.get("started"), previous.get("host"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_this_process()).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # Remove the file while still holding it, then let go: a run that opened it meanwhile sees it gone (above).
        try:
            self.path.unlink()
        except OSError:
            pass  # the folder was removed under us; nothing left to clean
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutputFolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in parentheses may hold spaces


def _this_process() -> dict[str, Any]:
    # The program only, never the command line: it may carry --hub_token.
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "program": Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"}


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}  # written by a process killed mid-write: nobody to name
    return holder if isinstance(holder, dict) else {}


def _is_alive(holder: dict[str, Any]) -> bool:
    """Whether the process a lock file names still runs (on this host; another host's cannot be checked)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    start = _process_start(pid)
    return start is None or holder.get("start") in (None, start)


def _in_use(folder: Path, holder: dict[str, Any]) -> str:
    who = (f"process {holder['pid']} ({holder.get('program', '?')}, started {holder.get('started', '?')} on "
           f"{holder.get('host', '?')})" if holder.get("pid") else "another process")
    return (f"--output_dir {folder} is in use by another run: {who} holds its lock ({folder / LOCK_NAME}); wait for "
            "it to finish, or choose another --output_dir")


def command_key(options: dict[str, Any]) -> str:
    """sha256 of the options a command gave, less those that do not change what it writes (resuming, overwriting,
    the token): two runs with the same key are the same job."""
    kept = {k: str(v) for k, v in options.items()
            if k not in ("resume_from_checkpoint", "overwrite_output_dir", "hub_token", "output_dir")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def read_record(folder: str | Path) -> dict[str, Any]:
    """The folder's run record (`RECORD_NAME`), or {} when it has none or it cannot be read."""
    try:
        record = json.loads((Path(folder) / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_record(folder: str | Path, command: str | None, default_folder: bool, finished: bool) -> None:
    """Record which command writes the folder's run (its `command_key`), whether the folder was the default one
    (no --output_dir given), and whether the run finished."""
    record = {"command": command, "default_output_dir": default_folder, "finished": finished}
    write_atomically(Path(folder) / RECORD_NAME, lambda temp: temp.write_text(json.dumps(record)))


def claim_output_dir(output_dir: str | Path, resume: bool, overwrite: bool, model_name_or_path: str,
                     is_main_process: bool = True, rerun_of: str | None = None) -> bool:
    """The rule: a run owns its output folder, so that a folder (and what `--push_to_hub` publishes from it) holds
    one run's results, never a mix of runs. Take `OutputFolderLock` first: the rule reads the folder as it is.

    A folder that is missing or empty is taken. A non-empty one is taken only by the run that wrote it, resumed
    (`resume`), or by a run that reads its model from that same folder (predicting with it, pushing it); with
    `overwrite` its contents are removed first (by the main process). Anything else is refused: old predictions,
    results and plots would sit beside new weights.

    One more case is the same job again: `rerun_of` is the `command_key` of a run given no --output_dir (the
    README's first command, `python train.py`). When the default folder holds a finished run of that same
    command, run again as written, its contents are replaced (with a warning) as with `overwrite`: the documented
    first step is repeatable, and nothing is lost that the same command does not write again. A different command,
    an unfinished run or a folder named with --output_dir is refused as before.

    Returns whether the run writes a run of its own (False when it reads its model from this same folder).
    """
    path = Path(output_dir)
    held = sorted(p.name for p in path.iterdir() if p.name not in RUN_FILES) if path.is_dir() else []
    if not held or resume:
        return True
    if Path(model_name_or_path).is_dir() and Path(model_name_or_path).resolve() == path.resolve():
        return False
    record = read_record(path) if rerun_of is not None else {}
    rerun = (not overwrite and rerun_of is not None and record.get("command") == rerun_of
             and record.get("finished") is True and record.get("default_output_dir") is True)
    if not (overwrite or rerun):
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise UserError(f"--output_dir {path} already holds another run's files ({shown}); a run owns its output "
                        "folder: choose a new --output_dir, resume that run (--resume_from_checkpoint latest), or "
                        "replace its contents (--overwrite_output_dir)")
    if is_main_process:
        if rerun:
            logger.warning("%s holds a finished run of this same command (no --output_dir given): replacing it; "
                           "give --output_dir to keep runs apart", path)
        else:
            logger.warning("--overwrite_output_dir: removing the %d entries of %s", len(held), path)
        for name in [*held, RECORD_NAME] if (path / RECORD_NAME).exists() else held:  # never the lock
            entry = path / name
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    return True


def _usual_permissions(path: str | Path) -> None:
    # temp files are created 0600; a published repo's files should be readable like any other file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_atomically(path: Path, write) -> None:
    """Call `write(temp_path)`, then move the finished file onto `path` (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(temp))
        _usual_permissions(temp)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
