"""Saving and publishing a run's model: the atomic save of the model repo, the checks that decide whether a
checkpoint can be resumed from, and the push to the Hub.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from arena_preference.run_folder import UserError, _usual_permissions

logger = logging.getLogger("train")


def save_repo(model: Any, tokenizer: Any, output_dir: str | Path) -> None:
    """Write the model as a complete Hub repo into `output_dir` (weights, tokenizer, remote-code modules,
    `custom_pipelines`), without ever leaving a loadable half-written model.

    Everything is written to a temporary folder next to the target first; then config.json (what makes a folder
    loadable) is removed, the new files are moved in one by one with os.replace (atomic per file), and the new
    config.json goes in last. A reader sees the old model, no model, or the new one; never a mix.
    """
    from encoding_arena import tokenizer_fingerprint
    from pipeline_arena import ArenaPreferencePipeline

    target = Path(output_dir)
    target.mkdir(parents=True, exist_ok=True)
    check_finite(model)
    model.config.tokenizer_fingerprint = tokenizer_fingerprint(tokenizer)  # checked whenever it is loaded
    for stale in target.parent.glob(f".{target.name}.saving-*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    try:
        # precision="fp32": the pipeline is built only to save; "auto" would first make a bf16 copy of the encoder (a
        # GPU) or export it to ONNX (an AVX2 CPU), which for a 7B decoder is gigabytes and minutes for nothing.
        ArenaPreferencePipeline(model=model, tokenizer=tokenizer, precision="fp32").save_pretrained(str(staging))
        (target / "config.json").unlink(missing_ok=True)
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        for path in sorted(files, key=lambda p: p.name == "config.json"):
            destination = target / path.relative_to(staging)
            destination.parent.mkdir(parents=True, exist_ok=True)
            _usual_permissions(path)
            os.replace(path, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_finite(model: Any) -> None:
    """Refuse to save a model with a NaN or infinite weight: a diverged model is never saved as if fine."""
    import torch

    bad = [name for name, tensor in model.state_dict().items()
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise UserError(f"the model has non-finite weights ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): "
                        "training diverged; nothing was saved (lower --learning_rate)")


def resolve_resume(training_args: Any) -> str | bool | None:
    """--resume_from_checkpoint PATH as given; "latest" (or "true") means the newest complete checkpoint in
    output_dir. Incomplete checkpoints (see `checkpoint_problem`) are skipped with a warning, or refused by path."""
    from transformers.trainer_utils import sort_checkpoints

    value = training_args.resume_from_checkpoint
    if value is None or str(value).lower() in ("", "none", "false"):
        return None
    if str(value).lower() in ("latest", "last", "true"):
        output_dir = training_args.output_dir
        found = sort_checkpoints(output_dir) if os.path.isdir(output_dir) else []
        if not found:
            raise UserError(f"--resume_from_checkpoint {value}: no checkpoint-* folder in {output_dir}")
        for checkpoint in reversed(found):  # newest first
            problem = checkpoint_problem(checkpoint)
            if problem is None:
                return checkpoint
            logger.warning("not resuming from %s: %s", checkpoint, problem)
        raise UserError(f"--resume_from_checkpoint {value}: no complete checkpoint in {output_dir} "
                        f"({len(found)} incomplete)")
    if not os.path.isdir(value):
        raise UserError(f"--resume_from_checkpoint {value}: no such checkpoint folder")
    problem = checkpoint_problem(value)
    if problem is not None:
        raise UserError(f"--resume_from_checkpoint {value}: incomplete checkpoint: {problem}")
    return value


# Config fields that decide the model's parameters (and so the optimizer's state): a checkpoint of a model that
# differs in one of them cannot be resumed by this run.
SHAPE_FIELDS = ("head", "rank_loss", "pooling", "style_features", "position_bias", "pool_layers")
ENCODER_SHAPE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")


def check_resume_matches(checkpoint: str | Path, config: Any) -> None:
    """Refuse to resume from a checkpoint of a model other than the one this run builds (e.g. `--head rank` over a
    classify run's checkpoint): Trainer would load its weights and optimizer state and fail in torch, with
    "loaded state dict contains a parameter group that doesn't match the size of optimizer's group"."""
    try:
        saved = json.loads((Path(checkpoint) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not written by this project's Trainer; Trainer's own checks apply
    saved_encoder = saved.get("encoder_config") or {}
    ours_encoder = config.encoder_config.to_dict() if hasattr(config.encoder_config, "to_dict") else {}
    differ = [(name, saved.get(name), getattr(config, name, None)) for name in SHAPE_FIELDS
              if name in saved and saved[name] != getattr(config, name, None)]
    differ += [(f"encoder {name}", saved_encoder.get(name), ours_encoder.get(name)) for name in ENCODER_SHAPE_FIELDS
               if name in saved_encoder and saved_encoder[name] != ours_encoder.get(name)]
    if differ:
        shown = ", ".join(f"{name}={was!r} there, {now!r} here" for name, was, now in differ)
        options = " ".join(f"--{name} {was}" for name, was, _ in differ if name in ("head", "rank_loss", "pooling"))
        raise UserError(f"--resume_from_checkpoint {checkpoint}: that checkpoint is of another model ({shown}); "
                        "resume with the options the run was started with"
                        f"{f' ({options})' if options else ''}, or start a new run in another --output_dir")


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it is complete.

    Trainer writes a checkpoint's files in place, trainer_state.json last, so a run killed while saving leaves a
    folder without it (or with it cut short); a weights file cut short later (a full disk, a partial copy) fails
    safetensors' header check, which covers the whole file. Trainer itself would resume from such a folder.
    """
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no trainer_state.json (the run stopped while saving it)"
    except (OSError, ValueError) as err:
        return f"unreadable trainer_state.json ({err})"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "no *.safetensors weights"
    for path in weights:
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except SafetensorError as err:
            return f"{path.name} is cut short ({err})"
    return None


# Seconds to wait for any answer of the Hub while pushing. huggingface_hub 2.4's shared HTTP client has no timeout
# (timeout=None), so a Hub that stops answering would hang the push forever; with one, a stalled request fails and
# is retried by the library like a 5xx. Set with HF_HUB_DOWNLOAD_TIMEOUT (the library's own "seconds to wait for
# the server" variable; it does not otherwise apply to uploads).
PUSH_TIMEOUT_S = 60.0


def push(output_dir: str | Path, training_args: Any) -> str:
    """Upload the output folder (checkpoints left out) to the Hub; returns the repo id. The token comes from
    --hub_token, HF_TOKEN or the stored login, as huggingface_hub finds it; it is never printed.

    huggingface_hub retries each request on 5xx answers and timeouts (5 retries, 1-8 s apart); when it gives up,
    a UserError says so, that the local output is complete, and how to push it again without training.

    Another endpoint (a private Hub, a test server such as tests/hub_server.py): set HF_ENDPOINT before Python
    starts (huggingface_hub reads it on import), and HF_HUB_DISABLE_XET=1 where it does not speak Xet; docs/hub.md.
    """
    import httpx2  # huggingface_hub 2's HTTP client; HfHubHTTPError and timeouts are its HTTPError
    from huggingface_hub import create_repo, get_session, upload_folder

    get_session().timeout = float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT") or PUSH_TIMEOUT_S)
    repo_id = training_args.hub_model_id or Path(output_dir).resolve().name
    token = training_args.hub_token
    # The HTTP client logs every request at INFO (a dozen lines a push), which train.py's INFO logging would show.
    http_log = logging.getLogger("httpx2")
    http_level = http_log.level
    http_log.setLevel(max(http_level, logging.WARNING))
    try:
        repo_id = create_repo(repo_id, token=token, private=training_args.hub_private_repo, exist_ok=True).repo_id
        upload_folder(
            repo_id=repo_id, folder_path=str(output_dir), token=token, revision=training_args.hub_revision,
            commit_message="Upload arena preference model (train.py)",
            ignore_patterns=["checkpoint-*", "checkpoint-*/**", "runs/**", ".*", ".*/**"],
        )
    except (httpx2.HTTPError, OSError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UserError(f"--push_to_hub {repo_id}: the upload failed after huggingface_hub's retries "
                        f"({type(err).__name__}: {reason}); {output_dir} is complete and unchanged. Push it again "
                        f"without training: python train.py --model_name_or_path {output_dir} --output_dir "
                        f"{output_dir} --do_train false --push_to_hub --hub_model_id {repo_id}") from err
    finally:
        http_log.setLevel(http_level)
    return repo_id


__all__ = ["check_finite", "check_resume_matches", "checkpoint_problem", "push", "resolve_resume", "save_repo"]
