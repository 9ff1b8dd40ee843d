"""The model and the battles a train.py run works on: the arena model around its encoder (fresh or trained, frozen
or not), the raw splits, and their tower inputs (pooled once when the encoder is frozen).
"""

from __future__ import annotations

import logging
from typing import Any

from configuration_arena import check_max_length
from arena_preference.run_folder import UserError
from arena_preference.training_arguments import DataArguments, ModelArguments

logger = logging.getLogger("train")
# What Trainer's batches are made of: the columns ArenaCollator reads, and `length` for length grouping.
MODEL_COLUMNS = ("input_ids_a", "input_ids_b", "pooled_a", "pooled_b", "style_a", "style_b", "label", "labels",
                 "length", "prompt_ids", "answer_ids_a", "answer_ids_b", "prompt_pooled", "answer_pooled_a",
                 "answer_pooled_b", "answer_flags_a", "answer_flags_b")


# The default recipe's content terms, chosen by grouped CV on real votes (bench/quality.py,
# docs/quality.md): relevance terms on (-0.002 log loss), and the label-free content pairs at this weight; the pairs
# fit only the content view's own relevance weight (the full view is the same at any weight), and on held-out
# off-topic pairs the content view rose with it: 68.0% (0.5), 82.3% (2), 85.2% (5), 86.8% (10) on random ones.
FRESH_RELEVANCE = True
FRESH_CONTENT_PAIRS_WEIGHT = 10.0


def model_columns(dataset: Any) -> Any:
    """The dataset with only its MODEL_COLUMNS: Trainer runs with remove_unused_columns off."""
    return dataset.select_columns([c for c in MODEL_COLUMNS if c in dataset.column_names])


def load_model_and_tokenizer(model_args: ModelArguments) -> tuple[Any, Any]:
    """(ArenaModel, tokenizer): a fresh model around the named encoder, or a trained arena model as it is."""
    from arena_preference.model_loading import load_model

    options = {k: getattr(model_args, k) for k in ("head", "rank_loss", "pooling", "truncation", "style_features")}
    options = {k: v for k, v in options.items() if v is not None}
    if model_args.cross_encoder:
        options["cross_encoder"] = True
    options.update(relevance_options(model_args))
    try:
        model, tokenizer = load_model(model_args.model_name_or_path, **options)
    except OSError as err:  # transformers' "not a local folder and not a valid model identifier" and kin
        raise UserError(f"--model_name_or_path {model_args.model_name_or_path}: {err}") from err
    if model_args.max_length is not None:  # else a fresh model's config took its default, a trained one keeps its own
        try:
            model.config.max_length = check_max_length(model_args.max_length, model.config.encoder_config)
        except ValueError as err:
            raise UserError(f"--max_length: {err}") from None
    tokenizer.model_max_length = model.config.max_length
    if model_args.freeze_encoder:
        for param in model.encoder.parameters():
            param.requires_grad = False
    return model, tokenizer


def relevance_options(model_args: ModelArguments) -> dict[str, Any]:
    """--relevance and --content_pairs_weight for load_model: as given; for a fresh model (an encoder, not a saved
    arena model) the recipe's defaults where not given (`FRESH_RELEVANCE`, `FRESH_CONTENT_PAIRS_WEIGHT`; relevance
    for the dual tower's classify head only); nothing for a saved model (it keeps what it was trained with)."""
    from arena_preference.model_loading import _is_arena

    given = {k: getattr(model_args, k, None) for k in ("relevance", "content_pairs_weight")}
    given = {k: v for k, v in given.items() if v is not None}
    name = model_args.model_name_or_path
    # The recipe's default is for the dual tower's classify head: the rank head and the cross-encoder have no
    # relevance terms, and LoRA runs (decoder LLMs) would pay three more encoder passes per battle for them.
    dual_tower_classify = ((getattr(model_args, "head", None) or "classify") == "classify"
                           and not getattr(model_args, "cross_encoder", False) and not getattr(model_args, "lora_r", None))
    if name.startswith("embedded:") or not _is_arena(name):
        given.setdefault("relevance", FRESH_RELEVANCE and dual_tower_classify)
        if given["relevance"]:
            given.setdefault("content_pairs_weight", FRESH_CONTENT_PAIRS_WEIGHT)
    return given


def trainer_class(freeze_encoder: bool) -> type:
    """`transformers.Trainer`; with a frozen encoder, a Trainer whose checkpoints hold only the weights that train.

    A checkpoint of the frozen recipe would otherwise keep a full copy of the encoder (88 MB for MiniLM) beside a
    head of a few thousand parameters. The run's model already holds that encoder, unchanged, so resuming loads the
    checkpoint's head onto it (and the frozen keys it lacks are expected, not warned about). The output folder's
    model (hub_io.save_repo) is saved whole, as before.
    """
    from transformers import Trainer

    if not freeze_encoder:
        return Trainer

    def frozen_keys(model: Any) -> set[str]:
        return {f"encoder.{key}" for key in model.encoder.state_dict()}

    class HeadCheckpointTrainer(Trainer):
        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            state_dict = self.model.state_dict() if state_dict is None else state_dict
            frozen = frozen_keys(self.model)
            super()._save(output_dir, {key: value for key, value in state_dict.items() if key not in frozen})

        def _issue_warnings_after_load(self, load_result: Any) -> None:
            frozen = frozen_keys(self.model)
            load_result.missing_keys[:] = [key for key in load_result.missing_keys if key not in frozen]
            super()._issue_warnings_after_load(load_result)

    return HeadCheckpointTrainer


def is_trained(model_name_or_path: str, model: Any) -> bool:
    """Whether the model is a saved arena model (not an encoder with a fresh head)."""
    # load_model returns a saved ArenaModel through from_pretrained, which records where it came from.
    return not model_name_or_path.startswith("embedded:") and bool(getattr(model.config, "_name_or_path", ""))


def load_splits(data_args: DataArguments, training_args: Any) -> dict[str, Any]:
    """The raw splits this run needs: {"train", "validation", "test"} (datasets.Dataset each, in the arena
    schema), with the validation split carved out of train by prompt when no validation set is given."""
    from arena_dataset import InvalidBattleError, load_arena
    from arena_preference.battle_transforms import split_by_prompt

    def load(file: str | None, split: str, needed: bool):
        source = file or data_args.dataset_name
        if source is None:
            return None
        try:
            return load_arena(source, split=split, skip_invalid=data_args.skip_invalid)
        except InvalidBattleError:
            raise
        except ValueError as err:  # a dataset without this split: fine unless the split itself was asked for
            if file is not None or needed:
                raise
            logger.info("%s has no %s split (%s)", source, split, err)
            return None

    splits: dict[str, Any] = {}
    if training_args.do_train or (training_args.do_eval and not data_args.validation_file):
        splits["train"] = load(data_args.train_file, "train", needed=training_args.do_train)
        if not data_args.teacher_file:  # with a teacher, unlabelled battles learn from its probabilities alone
            _require_labels(splits["train"], "train")  # before the split by prompt: its error would hide this one
    if training_args.do_eval:
        splits["validation"] = load(data_args.validation_file, "validation", needed=False)
        if splits["validation"] is None and splits.get("train") is not None and data_args.validation_split_percentage:
            held_out = split_by_prompt(splits["train"], data_args.validation_split_percentage / 100,
                                       seed=training_args.seed)
            splits["train"], splits["validation"] = held_out["train"], held_out["validation"]
            logger.info("held out %d of %d training battles for evaluation (split by prompt)",
                        len(held_out["validation"]), len(held_out["train"]) + len(held_out["validation"]))
        if splits["validation"] is None:
            raise UserError("--do_eval needs battles to evaluate: give --validation_file, a --dataset_name with a "
                            "validation split, or a --train_file with --validation_split_percentage > 0")
    if training_args.do_train and splits.get("train") is None:
        raise UserError("--do_train needs battles: give --train_file or --dataset_name")
    if training_args.do_predict:
        splits["test"] = load(data_args.test_file, "test", needed=True)
        if splits["test"] is None:
            raise UserError("--do_predict needs battles: give --test_file (or a --dataset_name with a test split)")
    _require_labels(splits.get("validation"), "validation")
    return {k: v for k, v in splits.items() if v is not None}


def _require_labels(split: Any, name: str) -> None:
    if split is not None and "label" not in split.column_names:
        raise UserError(f"the {name} battles have no labels (winner / winner_model_a.. columns); "
                        "training and evaluation need them")


def tokenize(splits: dict[str, Any], tokenizer: Any, model: Any, model_args: ModelArguments,
             data_args: DataArguments, training_args: Any) -> dict[str, Any]:
    """Tower inputs for train/validation through battle_transforms.tokenize_arena (encoding_arena underneath, the
    same path the pipeline takes at prediction time); with a frozen encoder, its pooled towers in place of the
    token ids (pooled_towers.embed_towers: one encoder pass, cached, instead of one per epoch), computed on the
    device this process trains on."""
    from datasets import concatenate_datasets

    from arena_preference.battle_transforms import swap_battles, tokenize_arena
    from arena_preference.pooled_towers import embed_towers

    out = {}
    for name in ("train", "validation"):
        if name in splits:
            relevance = model.config.relevance_max_length if getattr(model.config, "relevance", False) else None
            out[name] = tokenize_arena(splits[name], tokenizer, model.config.max_length, model.config.truncation,
                                       cross_encoder=getattr(model.config, "cross_encoder", False),
                                       relevance_max_length=relevance)
            if model_args.freeze_encoder:
                model.to(training_args.device)  # Trainer would move it there next; the pass runs there too
                out[name] = embed_towers(out[name], model, batch_size=training_args.per_device_eval_batch_size,
                                         precision=model_args.precision)
    if data_args.swap_augment and "train" in out:
        out["train"] = concatenate_datasets([out["train"], swap_battles(out["train"])])
    return {name: model_columns(split) for name, split in out.items()}


__all__ = ["is_trained", "load_model_and_tokenizer", "load_splits", "model_columns", "tokenize", "trainer_class"]
