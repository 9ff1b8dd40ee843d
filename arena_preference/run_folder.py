"""The run's output folder and the files in it: `UserError` (a problem with what the user asked for, reported in
one line), `write_atomically`, and the rule that a run owns its output folder (`claim_output_dir`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger("train")


class UserError(Exception):
    """A problem with what the user asked for; reported in one line, without a traceback."""


def claim_output_dir(output_dir: str | Path, resume: bool, overwrite: bool, model_name_or_path: str,
                     is_main_process: bool = True) -> None:
    """The rule: a run owns its output folder, so that a folder (and what `--push_to_hub` publishes from it) holds
    one run's results, never a mix of runs.

    A folder that is missing or empty is taken. A non-empty one is taken only by the run that wrote it, resumed
    (`resume`), or by a run that reads its model from that same folder (predicting with it, pushing it); with
    `overwrite` its contents are removed first (by the main process). Anything else is refused: old predictions,
    results and plots would sit beside new weights.
    """
    path = Path(output_dir)
    held = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if not held or resume:
        return
    if Path(model_name_or_path).is_dir() and Path(model_name_or_path).resolve() == path.resolve():
        return
    if not overwrite:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise UserError(f"--output_dir {path} already holds another run's files ({shown}); a run owns its output "
                        "folder: choose a new --output_dir, resume that run (--resume_from_checkpoint latest), or "
                        "replace its contents (--overwrite_output_dir)")
    if is_main_process:
        logger.warning("--overwrite_output_dir: removing the %d entries of %s", len(held), path)
        for name in held:
            entry = path / name
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


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
