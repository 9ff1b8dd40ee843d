"""ArenaModel: a dual-tower preference model (one shared encoder, a classify or rank head).

Remote-code module: imports only torch, transformers and its sibling modules (copied next to config.json on save).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification, PreTrainedModel
from transformers.utils import ModelOutput

try:  # loaded as remote code (a package made of the saved directory)
    from .configuration_arena import ArenaConfig
    from .encoding_arena import ANSWER_FLAGS, STYLE_FEATURES
except ImportError:  # imported from the project checkout / installed distribution
    from configuration_arena import ArenaConfig
    from encoding_arena import ANSWER_FLAGS, STYLE_FEATURES


# Hidden layers a fresh model averages before pooling: lower layers keep surface detail that the last layer of a
# frozen sentence encoder smooths away; chosen by grouped cross-validation on real votes (bench/quality.py).
FRESH_POOL_LAYERS = 3
# A class registers for one auto class only (AutoModel, below); this second key is written into config.auto_map.
AUTO_MAP_EXTRA = {"AutoModelForSequenceClassification": "modeling_arena.ArenaModel"}


@dataclass
class ArenaOutput(ModelOutput):
    """Output of [`ArenaModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): training loss, when `labels` are given.
        logits (`torch.FloatTensor` of shape `(batch_size, 3)`): softmax gives P(winner_model_a),
            P(winner_model_b), P(winner_tie) (already divided by `config.temperature`).
        rewards (`torch.FloatTensor` of shape `(batch_size, 2)`, *optional*): r_A, r_B with the rank head.
        content_logits (`torch.FloatTensor` of shape `(batch_size, 3)`): `logits` without the style terms'
            contribution: what the model thinks of the content alone, style held equal ("style control" in the
            Chatbot Arena sense). Equal to `logits` for a model without style features.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    rewards: torch.FloatTensor | None = None
    content_logits: torch.FloatTensor | None = None


def davidson_logits(reward_gap: torch.Tensor, log_nu: torch.Tensor) -> torch.Tensor:
    """Logits [d/2, -d/2, log nu] whose softmax is the Davidson (Bradley-Terry with ties) model.

    P(A) : P(B) : P(tie) = sqrt(pi_A / pi_B) : sqrt(pi_B / pi_A) : nu, with d = log(pi_A / pi_B). Swapping A and B
    negates d, which swaps P(A) and P(B) and keeps P(tie): symmetric by construction.

    Args:
        reward_gap: `(batch_size,)` r_A - r_B.
        log_nu: `()` log of the tie parameter.
    Returns:
        `(batch_size, 3)` logits.
    """
    half = reward_gap / 2
    return torch.stack([half, -half, log_nu.to(half.dtype).expand_as(half)], dim=-1)


def _trim(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the trailing columns that are padding in every row (a batch collated with the other side's towers)."""
    used = attention_mask.any(0).nonzero()
    length = int(used.max()) + 1 if len(used) else 1
    return input_ids[:, :length], attention_mask[:, :length]


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """`(N, L, H)` hidden states and `(N, L)` mask -> `(N, H)`: mask-weighted mean, the first token, or the last
    non-padding token."""
    if pooling == "last":
        return last_token(hidden, mask)
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`(N, L, H)` hidden states and `(N, L)` mask -> `(N, H)`: each row's last non-padding token.

    Found from the mask, not from the tokenizer's padding side: the largest position whose mask is 1, so left and
    right padding (and a batch mixing both) pick the same token. A decoder's last token is the only one that has
    read the whole sequence.
    """
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (positions * (mask > 0)).argmax(-1)  # (N,) the largest unmasked position (0 for an all-padding row)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def mask_positions(mask: torch.Tensor) -> torch.Tensor:
    """`(N, L)` mask -> `(N, L)` position ids counted over the real tokens only (padding gets 0).

    A decoder numbers positions 0..L-1 by column unless told otherwise, so a left-padded row would start at the
    padding's length; rotary positions (Llama, Qwen2, Gemma) only see relative offsets and do not mind, but learned
    absolute ones (GPT-2 and BERT shapes) would read it differently from the same row alone. Counting from the mask
    gives every real token the position it has alone.
    """
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _takes_position_ids(encoder: nn.Module) -> bool:
    """Whether the encoder's forward accepts `position_ids` (by name, or through **kwargs as peft's wrapper does);
    a few encoders (DistilBERT) have none."""
    parameters = inspect.signature(encoder.forward).parameters
    return "position_ids" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def normalised_differences(counts_a: torch.Tensor, counts_b: torch.Tensor) -> torch.Tensor:
    """`(B, C)` counts of each side -> `(B, C)` (A - B) / (A + B) in [-1, 1], 0 where both are 0.

    The Chatbot Arena's style-control covariates: scale-free, so a 100-word gap counts for more between short
    answers than between long ones, and antisymmetric (swapping A and B negates them).
    """
    total = counts_a + counts_b
    return torch.where(total > 0, (counts_a - counts_b) / total.clamp(min=1e-6), torch.zeros_like(total))


class ArenaClassifyHead(nn.Module):
    """Three logits from two pooled towers, symmetric in A and B by construction.

    With a = pooled A, b = pooled B (`(B, H)`), and per-side style features split into counts (`log_*` columns of
    `STYLE_FEATURES`, read back as counts) and signals (`is_*` columns: empty answer, refusal, identical answers):

        content:  A = w1.a + w2.b      B = w1.b + w2.a      tie = v.|a - b| + c
        style:    A = s.x + g1.f_a + g2.f_b   B = -s.x + g1.f_b + g2.f_a   tie = t.|x| + u.(f_a + f_b)

    where x = (counts_A - counts_B) / (counts_A + counts_B). Swapping A and B swaps the A and B logits and keeps the
    tie logit, so P(A | a, b) = P(B | b, a) exactly. Style enters additively: the content logits alone are the
    style-controlled prediction. `position_bias` adds a learned +p to the A logit and -p to the B logit (off by
    default: a prior for the first-shown answer, for data that really has one).
    """

    def __init__(self, hidden_size: int, n_counts: int = 0, n_signals: int = 0, position_bias: bool = False) -> None:
        super().__init__()
        self.n_counts, self.n_signals = n_counts, n_signals
        # No bias on the A/B logits: a shared one is absorbed by the tie bias, a separate one is a position prior.
        self.content = nn.Linear(2 * hidden_size, 1, bias=False)
        self.content_tie = nn.Linear(hidden_size, 1)
        n_style = n_counts + n_signals
        self.style = nn.Linear(n_counts + 2 * n_signals, 1, bias=False) if n_style else None
        self.style_tie = nn.Linear(n_style, 1, bias=False) if n_style else None
        self.position = nn.Parameter(torch.zeros(())) if position_bias else None

    def forward(
        self,
        pooled_a: torch.Tensor,
        pooled_b: torch.Tensor,
        style_a: torch.Tensor | None = None,
        style_b: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(B, H)` pooled towers and `(B, F)` style features -> `(B, 3)` logits and `(B, 3)` content logits (the
        logits without the style terms; None without style features)."""
        a_first = self.content(torch.cat([pooled_a, pooled_b], -1))
        b_first = self.content(torch.cat([pooled_b, pooled_a], -1))
        content = torch.cat([a_first, b_first, self.content_tie((pooled_a - pooled_b).abs())], -1)
        if self.position is not None:
            content = content + torch.stack([self.position, -self.position, torch.zeros_like(self.position)])
        if self.style is None:
            return content, None
        style = self.style_logits(style_a.to(content.dtype), style_b.to(content.dtype))
        return content + style, content

    def style_logits(self, style_a: torch.Tensor, style_b: torch.Tensor) -> torch.Tensor:
        """`(B, F)` style features of each side -> `(B, 3)` style terms of the logits."""
        n = self.n_counts
        # log1p counts back to counts: the normalised difference needs the counts themselves
        x = normalised_differences(torch.expm1(style_a[:, :n]), torch.expm1(style_b[:, :n]))
        signals_a, signals_b = style_a[:, n:], style_b[:, n:]
        a_term = self.style(torch.cat([x, signals_a, signals_b], -1))
        b_term = self.style(torch.cat([-x, signals_b, signals_a], -1))
        tie = self.style_tie(torch.cat([x.abs(), signals_a + signals_b], -1))
        return torch.cat([a_term, b_term, tie], -1)


class ArenaRelevanceTerms(nn.Module):
    """Content terms from the prompt and each answer encoded on their own, symmetric in A and B.

    Per side, `features` gives r = [cos(prompt, answer), cos(last user turn, last answer), *ANSWER_FLAGS]; then

        A = k.r_a      B = k.r_b      tie = q.|r_a - r_b|

    so the A - B gap is k.(r_a - r_b), antisymmetric, e.g. k_1 (cos(p, a) - cos(p, b)). Swapping A and B swaps the A
    and B terms and keeps the tie term. These are content terms: they stay in `content_logits`, where a second
    weight adds to them (`content_terms`: A += c.r_a, B += c.r_b): the full view's k is fitted to the votes, which
    rarely hinge on relevance; c is fitted by the label-free content pairs only (`content_pair_loss`), so that the
    content view ("which answer is better, style aside") prefers the answer to the question asked.
    """

    def __init__(self, n_features: int = 2 + len(ANSWER_FLAGS)) -> None:
        super().__init__()
        self.side = nn.Linear(n_features, 1, bias=False)
        self.tie = nn.Linear(n_features, 1, bias=False)
        self.content_side = nn.Linear(n_features, 1, bias=False)

    def content_terms(self, features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
        """`(B, R)` features of each side -> `(B, 3)` the content view's extra A and B terms (tie: 0)."""
        a, b = self.content_side(features_a), self.content_side(features_b)
        return torch.cat([a, b, torch.zeros_like(a)], -1)

    def content_gap(self, features_x: torch.Tensor, features_y: torch.Tensor) -> torch.Tensor:
        """`(N,)` the content view's relevance part of logit(x) - logit(y), k held as the votes fit it."""
        weight = self.side.weight.detach() + self.content_side.weight
        return F.linear(features_x - features_y, weight).squeeze(-1)

    @staticmethod
    def features(prompt: torch.Tensor, answer: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        """`(B, 2, H)` prompt and answer vectors (whole text, last turn) and `(B, F)` answer flags -> `(B, 2 + F)`."""
        cosines = F.cosine_similarity(prompt.float(), answer.float(), dim=-1, eps=1e-6)
        return torch.cat([cosines, flags.to(cosines.dtype)], -1)

    def forward(self, features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
        """`(B, R)` features of each side -> `(B, 3)` terms of the A, B and tie logits."""
        return torch.cat([self.side(features_a), self.side(features_b), self.tie((features_a - features_b).abs())],
                         -1)


# Prompts at least this close (cosine of their whole-prompt vectors) count as the same question: their answers are
# not "an answer to another prompt" (repeated votes on one prompt, paraphrases).
SAME_PROMPT_COSINE = 0.95
# The repetition flag of an answer said twice (`encoding_arena.answer_flags`).
REPEATED_ANSWER = 0.5


def tower_gap(head: ArenaClassifyHead, tower_x: torch.Tensor, tower_y: torch.Tensor) -> torch.Tensor:
    """`(N,)` the classify head's tower content terms of logit(x) - logit(y) for `(N, H)` pooled towers, its
    weights held as the votes fit them (detached)."""
    weight = head.content.weight.detach()
    return (F.linear(torch.cat([tower_x, tower_y], -1), weight) - F.linear(torch.cat([tower_y, tower_x], -1),
                                                                          weight)).squeeze(-1)


def content_pair_loss(terms: ArenaRelevanceTerms, prompt: torch.Tensor, answer_a: torch.Tensor,
                      answer_b: torch.Tensor, flags_a: torch.Tensor, flags_b: torch.Tensor,
                      generator: torch.Generator | None = None, head: ArenaClassifyHead | None = None,
                      towers: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Label-free content pairs made from a batch of B battles, as a mean logistic loss (the on-topic answer wins):

    each non-empty answer (A and B of every battle) against
      - the answer of a random other battle of the batch whose prompt is another question (cosine of the prompt
        vectors below `SAME_PROMPT_COSINE`), and against the one whose prompt is closest (the hard case);
      - itself emptied, cut off mid-sentence and said twice: the same vectors with the flag raised (the flags are
        what `encoding_arena.answer_flags` gives such answers), so only the flags' weights can tell them apart.
    Scored as the content view scores them, without the tie logit (these pairs have no tie): the relevance part
    (`ArenaRelevanceTerms.content_gap`) plus, with `head` and `towers` (`(B, H)` pooled A and B), the towers'
    content terms (`tower_gap`), the off-topic answer standing with its own battle's tower (its tower with this
    prompt would cost an encoder pass per pair). Only the content view's own weight `content_side` learns from
    them: the vote-fitted weights are held (detached), so the full view stays the votes'. `prompt`, `answer_a/b`:
    `(B, 2, H)`; flags `(B, F)`.
    """
    batch = prompt.shape[0]
    unit = F.normalize(prompt[:, 0].float(), dim=-1)
    similarity = unit @ unit.T
    other_question = similarity < SAME_PROMPT_COSINE
    other_question.fill_diagonal_(False)
    answers, flags = torch.stack([answer_a, answer_b]), torch.stack([flags_a, flags_b])  # (2, B, 2, H), (2, B, F)
    gaps = []
    for side in range(2):
        real = ArenaRelevanceTerms.features(prompt, answers[side], flags[side])
        usable = flags[side][:, ANSWER_FLAGS.index("is_empty")] < 0.5
        draws = torch.rand(batch, batch, generator=generator, device=prompt.device)
        for score in (draws, similarity):
            partner = score.masked_fill(~other_question, -2.0).argmax(-1)
            other_side = torch.randint(0, 2, (batch,), generator=generator, device=prompt.device)
            off_topic = ArenaRelevanceTerms.features(prompt, answers[other_side, partner], flags[other_side, partner])
            keep = usable & other_question.any(-1)
            gap = terms.content_gap(real, off_topic)
            if head is not None and towers is not None:
                stacked = torch.stack(towers)
                gap = gap + tower_gap(head, stacked[side], stacked[other_side, partner])
            gaps.append(gap[keep])
        columns = torch.arange(real.shape[1], device=real.device)
        for flag, value in (("is_empty", 1.0), ("is_cut_off", 1.0), ("repetition", REPEATED_ANSWER)):
            column = 2 + ANSWER_FLAGS.index(flag)
            # out of place: `real` carries the encoder's gradient when it is fine-tuned
            broken = torch.where(columns >= 2, 0.0, real) if flag == "is_empty" else real
            broken = torch.where(columns == column, broken.clamp(min=value), broken)
            gaps.append(terms.content_gap(real, broken)[usable & (real[:, column] < value)])
    gap = torch.cat(gaps)
    return F.softplus(-gap).mean() if gap.numel() else prompt.new_zeros(())


class ArenaRankHead(nn.Module):
    """A reward per response, and the three probabilities from the reward gap (Davidson's ties).

    With p = a pooled tower `(B, H)` and f its per-response style features (battle-level signals such as identical
    answers left out, so that a response scored alone gets the reward it gets in a battle):

        r = w.p [+ s.f]          logits = davidson_logits(r_A - r_B, log nu) = [d/2, -d/2, log nu]

    Swapping A and B negates the gap, so P(A | a, b) = P(B | b, a) exactly. The style reward is additive: the
    content-only gap is w.p_A - w.p_B. With rank_loss="mse" the regressed gap (targets +-1, 0) reaches the
    probabilities through a learned scale, trained by log loss on the detached gap.
    """

    def __init__(self, hidden_size: int, style_columns: list[int] | None = None, rank_loss: str = "davidson") -> None:
        super().__init__()
        # No bias: only r_A - r_B reaches the loss, so a bias would get no gradient.
        self.reward = nn.Linear(hidden_size, 1, bias=False)
        self.style_columns = list(style_columns or [])
        self.style_reward = nn.Linear(len(self.style_columns), 1, bias=False) if self.style_columns else None
        self.log_nu = nn.Parameter(torch.zeros(()))
        self.log_scale = nn.Parameter(torch.zeros(())) if rank_loss == "mse" else None

    def rewards(self, pooled: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """`(N, H)` pooled towers (and `(N, F)` style features, all of `STYLE_FEATURES`) -> `(N,)` rewards."""
        out = self.reward(pooled).squeeze(-1)
        if self.style_reward is not None:
            out = out + self.style_reward(style[:, self.style_columns].to(out.dtype)).squeeze(-1)
        return out

    def logits(self, gap: torch.Tensor) -> torch.Tensor:
        """`(B,)` reward gaps r_A - r_B -> `(B, 3)` logits."""
        if self.log_scale is not None:
            return davidson_logits(gap.detach() * self.log_scale.exp(), self.log_nu)
        return davidson_logits(gap, self.log_nu)

    def forward(
        self,
        pooled_a: torch.Tensor,
        pooled_b: torch.Tensor,
        style_a: torch.Tensor | None = None,
        style_b: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(B, H)` pooled towers and `(B, F)` style features -> `(B, 3)` logits, `(B, 3)` content logits (the
        gap without the style rewards) and `(B, 2)` rewards."""
        rewards = torch.stack([self.rewards(pooled_a, style_a), self.rewards(pooled_b, style_b)], dim=-1)
        content_gap = (self.reward(pooled_a) - self.reward(pooled_b)).squeeze(-1)
        return self.logits(rewards[:, 0] - rewards[:, 1]), self.logits(content_gap), rewards


class ModelFilesError(Exception):
    """A saved model's files are broken or unsafe; the message names the file and what to do.

    Not an OSError/ValueError on purpose: `transformers.pipeline` catches those from `from_pretrained` and re-raises
    them inside a "Could not load model ... See the original errors" ValueError that quotes the whole traceback.
    """


def check_model_files(name_or_path: Any) -> None:
    """Before transformers reads a local model folder, name what is wrong with its files, in words: a weights file
    cut short (safetensors: "incomplete metadata"), pickled weights (torch: "Weights only load failed ...
    Unsupported operand"), a config.json without `encoder_config` (transformers: a page of size mismatches, then
    "You set ignore_mismatched_sizes to False"), a tokenizer JSON file cut short (json: "Unterminated string")."""
    import json
    import os

    folder = str(name_or_path)
    if not os.path.isdir(folder):
        return  # a Hub id: its files are checked as they fail (_model_file_problem)
    config_path = os.path.join(folder, "config.json")
    try:
        with open(config_path, encoding="utf-8") as handle:
            saved = json.load(handle)
    except (OSError, ValueError):
        saved = None  # transformers names a missing or unreadable config.json itself
    if isinstance(saved, dict) and saved.get("model_type") == ArenaConfig.model_type and not saved.get(
            "encoder_config"):
        raise ModelFilesError(
            f"{config_path}: has no encoder_config, the encoder's architecture (deleted or edited?); without it the "
            "saved weights cannot be placed: restore config.json as it was saved (or download the model again)")
    names = sorted(os.listdir(folder))
    for name in names:  # the tokenizer's JSON, which json would otherwise report as "Unterminated string ..." alone
        if name.startswith(("tokenizer", "special_tokens_map")) and name.endswith(".json"):
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    json.load(handle)
            except (OSError, ValueError) as err:
                raise ModelFilesError(
                    f"{os.path.join(folder, name)}: not a complete JSON file ({err}); it was cut short or changed "
                    "(an interrupted save, copy or download): save or download the model again") from None
    pickled = [name for name in names if name.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    if pickled and not any(name.endswith(".safetensors") for name in names):
        raise ModelFilesError(
            f"{os.path.join(folder, pickled[0])}: pickled weights are refused: unpickling a file can run any code "
            "in it, and arena-preference models are saved as model.safetensors; load a model saved as safetensors "
            "(convert weights you trust with safetensors.torch.save_file)")
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:  # transformers requires safetensors; nothing to check with otherwise
        return
    for name in names:
        if name.endswith(".safetensors"):
            try:
                with safe_open(os.path.join(folder, name), framework="pt"):
                    pass  # reading the header checks that the file holds every tensor it lists
            except SafetensorError as err:
                raise ModelFilesError(
                    f"{os.path.join(folder, name)}: not a complete safetensors file ({err}); it was cut short (an "
                    "interrupted save, copy or download): save or download it again") from None


def _model_file_problem(where: Any, err: Exception) -> str | None:
    """The words for a load that failed on a model's files (a Hub repo's, read only once downloaded), or None."""
    text = " ".join(str(err).split())
    kind = type(err).__name__
    if kind == "SafetensorError":
        return (f"{where}: a weights file is not a complete safetensors file ({text}); it was cut short (an "
                "interrupted upload or download): download it again")
    if kind == "UnpicklingError" or "Weights only load failed" in text:
        return (f"{where}: pickled weights are refused: unpickling a file can run any code in it, and "
                "arena-preference models are saved as model.safetensors; load a model saved as safetensors")
    if "ignore_mismatched_sizes" in text:
        return (f"{where}: its weights do not fit the model its config.json describes (a deleted or edited "
                "encoder_config?); config.json and the weights belong to different models: restore config.json")
    return None

class ArenaJointHead(nn.Module):
    """The cross-encoder's head: three logits per order of the joint sequence, the two orders' probabilities
    averaged, so P(A | a, b) = P(B | b, a) exactly.

    With h_ab the pooled sequence (prompt, a, b) and h_ba the pooled (prompt, b, a), and per-side style features
    s_a, s_b:

        order (a, b):  l_ab = W h_ab + S [s_a, s_b]     -> P(first shown wins), P(second shown wins), P(tie)
        order (b, a):  l_ba = W h_ba + S [s_b, s_a]
        P = (softmax(l_ab) + softmax(l_ba)[second, first, tie]) / 2

    Swapping a and b exchanges the two orders, so it swaps P(A) and P(B) and keeps P(tie), whatever W and S are.
    The returned logits are log P (softmax gives P back). Style enters additively per order; the content logits are
    the same average without the S terms (the style-controlled prediction).
    """

    def __init__(self, hidden_size: int, n_style: int = 0) -> None:
        super().__init__()
        self.order = nn.Linear(hidden_size, 3)
        self.style = nn.Linear(2 * n_style, 3, bias=False) if n_style else None

    def reset_parameters(self) -> None:
        """The seed head's init for W (Normal(0, 0.02), bias 0); style terms start at 0 (no style effect)."""
        nn.init.normal_(self.order.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.order.bias)
        if self.style is not None:
            nn.init.zeros_(self.style.weight)

    def forward(
        self,
        pooled_ab: torch.Tensor,
        pooled_ba: torch.Tensor,
        style_a: torch.Tensor | None = None,
        style_b: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(B, H)` pooled orders (a, b) and (b, a), `(B, F)` style features -> `(B, 3)` logits (log of the averaged
        probabilities, in A/B order) and `(B, 3)` content logits (None without style features)."""
        content_ab, content_ba = self.order(pooled_ab).float(), self.order(pooled_ba).float()
        content = None
        if self.style is not None:
            content = _average_orders(content_ab, content_ba)
            content_ab = content_ab + self.style(torch.cat([style_a, style_b], -1).to(self.style.weight.dtype)).float()
            content_ba = content_ba + self.style(torch.cat([style_b, style_a], -1).to(self.style.weight.dtype)).float()
        return _average_orders(content_ab, content_ba), content


def _average_orders(logits_ab: torch.Tensor, logits_ba: torch.Tensor) -> torch.Tensor:
    """`(B, 3)` logits of order (a, b) and of order (b, a) (each: first shown, second shown, tie) -> `(B, 3)` log of
    the averaged probabilities in A/B order."""
    probs = (logits_ab.softmax(-1) + logits_ba.softmax(-1)[:, [1, 0, 2]]) / 2
    return probs.clamp(min=torch.finfo(probs.dtype).tiny).log()


class ArenaPreTrainedModel(PreTrainedModel):
    config_class = ArenaConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True
    # forward has no **kwargs, but say it outright: Trainer must not rescale the loss by the number of processes.
    accepts_loss_kwargs = False
    _no_split_modules: list[str] = []

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.from_pretrained`, but a saved model whose weights do not cover the model is an error,
        not a warning over freshly drawn weights: e.g. a config.json whose `head` was changed or removed would
        otherwise load a random head and predict as if trained."""
        wants_info = kwargs.pop("output_loading_info", False)
        where = args[0] if args else kwargs.get("pretrained_model_name_or_path", "the saved model")
        check_model_files(where)
        try:
            model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        except Exception as err:  # a Hub repo's files, which check_model_files cannot read before the download
            problem = _model_file_problem(where, err)
            if problem is None:
                raise
            raise ModelFilesError(problem) from None
        missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
        if missing or unexpected:
            if not unexpected and all(key.startswith(f"{cls.base_model_prefix}.") for key in missing):
                # A training checkpoint that saved only the weights that train (the head on a frozen encoder).
                raise OSError(f"{where}: holds the head's weights only, no encoder: it is a training checkpoint, "
                              "to resume from, not a model to load")
            raise OSError(f"{where}: its weights do not match its config.json (head={model.config.head!r}): "
                          f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}, unexpected "
                          f"{unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}; config.json and the weights "
                          "belong to different models")
        return (model, info) if wants_info else model

    def _init_weights(self, module: nn.Module) -> None:
        # The heads only: the encoder is a PreTrainedModel and initialises itself.
        if isinstance(module, ArenaModel):
            head, ranker = module.classifier, module.ranker
            content, style, scalars = (), (), ()
            if head is not None:
                content, style, scalars = (head.content, head.content_tie), (head.style, head.style_tie), (head.position,)
            elif ranker is not None:
                content, style = (ranker.reward,), (ranker.style_reward,)
                scalars = (ranker.log_nu, ranker.log_scale)
            # content weights as the seed's head, Normal(0, 0.02); style terms start at 0 (no style effect)
            for linear, std in ((*((c, 0.02) for c in content), *((s, 0.0) for s in style))):
                if linear is not None:
                    nn.init.normal_(linear.weight, mean=0.0, std=std) if std else nn.init.zeros_(linear.weight)
                    if linear.bias is not None:
                        nn.init.zeros_(linear.bias)
            for param in scalars:
                if param is not None:
                    nn.init.zeros_(param)
            if getattr(module, "joint_head", None) is not None:
                module.joint_head.reset_parameters()
        terms = module if isinstance(module, ArenaRelevanceTerms) else getattr(module, "relevance_terms", None)
        if isinstance(terms, ArenaRelevanceTerms):  # no relevance effect until trained, as the style terms
            for linear in (terms.side, terms.tie, terms.content_side):
                nn.init.zeros_(linear.weight)


class ArenaModel(ArenaPreTrainedModel):
    """Dual tower: the shared encoder reads (prompt + response A) and (prompt + response B), pools each, and the
    head compares them.

    - classify: `ArenaClassifyHead`, symmetric in A and B: A-logit f(a, b), B-logit f(b, a), a tie logit from
      symmetric terms, content and style terms added (the content terms alone are the style-controlled output).
    - rank: `ArenaRankHead`, Linear(H -> 1) per tower [+ Linear(F -> 1) on its style features] -> rewards r_A,
      r_B; the three probabilities are `davidson_logits(r_A - r_B)`.
    - cross-encoder (`config.cross_encoder`): tower A is the joint sequence (prompt, a, b) and tower B the same
      battle in the other order (prompt, b, a) (`encoding_arena.encode_joint_battles`); `ArenaJointHead` averages
      the two orders' probabilities.
    """

    def __init__(self, config: ArenaConfig, encoder: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        self.config.auto_map = {**AUTO_MAP_EXTRA, **(getattr(config, "auto_map", None) or {})}
        self.encoder = encoder if encoder is not None else AutoModel.from_config(config.encoder_config)
        hidden = config.encoder_config.hidden_size
        layers = getattr(config, "pool_layers", 1)
        if not 1 <= layers <= config.encoder_config.num_hidden_layers + 1:
            raise ValueError(f"ArenaConfig: pool_layers={layers} must be between 1 and the encoder's "
                             f"{config.encoder_config.num_hidden_layers} layers + 1 (its embeddings)")
        n_style = len(STYLE_FEATURES) if config.style_features else 0
        self.dropout = nn.Dropout(config.classifier_dropout)
        # One head, picked by config.head; the other attribute stays None.
        self.classifier: ArenaClassifyHead | None = None
        self.ranker: ArenaRankHead | None = None
        if config.head == "classify":
            n_counts = sum(name.startswith("log_") for name in STYLE_FEATURES) if n_style else 0
            self.classifier = ArenaClassifyHead(hidden, n_counts, n_style - n_counts, config.position_bias)
        else:
            if config.position_bias:
                raise ValueError("ArenaConfig: position_bias is a term of the classify head; the rank head has none")
            # A reward belongs to one response: battle-level signals (identical answers) stay out of it, so a
            # response scored alone (the pipeline's score_responses) gets the reward it gets in a battle.
            per_response = [i for i, name in enumerate(STYLE_FEATURES) if name != "is_identical"] if n_style else []
            self.ranker = ArenaRankHead(hidden, per_response, config.rank_loss)
        self.joint_head = None
        if getattr(config, "cross_encoder", False):
            # The cross-encoder's own head replaces the dual tower's (see ArenaJointHead).
            self.classifier = None
            self.joint_head = ArenaJointHead(hidden, n_style)
        self.relevance_terms = None
        if getattr(config, "relevance", False):
            if config.head != "classify" or getattr(config, "cross_encoder", False):
                raise ValueError("ArenaConfig: relevance terms are terms of the dual tower's classify head; the rank "
                                 "head and the cross-encoder have none")
            self.relevance_terms = ArenaRelevanceTerms()
        self.post_init()
        # transformers 5 initialises weights in from_config/from_pretrained, not in __init__; a plain
        # ArenaModel(config) must get the seed's head init too (a no-op inside from_pretrained's no-init context).
        self._init_weights(self)

    @classmethod
    def from_encoder(cls, encoder: str | PreTrainedModel, **config_kwargs: Any) -> ArenaModel:
        """A fresh ArenaModel around a pretrained encoder (a `PreTrainedModel`, a local path or a Hub id).

        The heads are newly initialised; `config_kwargs` go to `ArenaConfig` (e.g. `head="rank"`). A fresh model
        pools the mean of the last `FRESH_POOL_LAYERS` hidden layers unless `pool_layers` is given (a saved model
        keeps the value it was trained with; configs without the field mean 1). Load the
        matching tokenizer with `AutoTokenizer.from_pretrained` on the same path.
        """
        if isinstance(encoder, str):
            encoder = AutoModel.from_pretrained(encoder)
        config_kwargs.setdefault("pool_layers", min(FRESH_POOL_LAYERS, encoder.config.num_hidden_layers + 1))
        config = ArenaConfig(encoder_config=encoder.config.to_dict(), **config_kwargs)
        return cls(config, encoder=encoder)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(N, L)` token ids and mask -> `(N, L, H)`: the mean of the last `config.pool_layers` hidden layers, what
        `encode` pools (and what precision_arena's ONNX export computes)."""
        layers = getattr(self.config, "pool_layers", 1)
        # last-token pooling reads decoders: positions from the mask, so left padding reads like right padding
        positions = ({"position_ids": mask_positions(attention_mask)}
                     if self.config.pooling == "last" and _takes_position_ids(self.encoder) else {})
        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=layers > 1,
                              **positions)
        return output.last_hidden_state if layers == 1 else torch.stack(output.hidden_states[-layers:]).mean(0)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(N, L)` token ids and mask -> `(N, H)` pooled embeddings (of the mean of the last `config.pool_layers`
        hidden layers)."""
        return pool(self.hidden_states(input_ids, attention_mask), attention_mask, self.config.pooling)

    def reward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, style: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Rank head: `(N, L)` towers (and `(N, F)` style features) -> `(N,)` rewards."""
        if self.ranker is None:
            raise ValueError("reward() needs a model trained with head='rank'")
        if self.ranker.style_reward is not None:
            style = self._check_style(style, "style")
        return self.ranker.rewards(self.dropout(self.encode(input_ids, attention_mask)), style)

    def _check_style(self, style: torch.Tensor | None, name: str) -> torch.Tensor:
        if style is None:
            raise ValueError(
                f"{name} is required: this model uses style features (config.style_features=True); "
                "build inputs with encoding_arena.encode_battles"
            )
        return style

    def forward(
        self,
        input_ids_a: torch.Tensor | None = None,
        attention_mask_a: torch.Tensor | None = None,
        input_ids_b: torch.Tensor | None = None,
        attention_mask_b: torch.Tensor | None = None,
        style_a: torch.Tensor | None = None,
        style_b: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pooled_a: torch.Tensor | None = None,
        pooled_b: torch.Tensor | None = None,
        return_dict: bool | None = None,
        prompt_input_ids: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        answer_input_ids_a: torch.Tensor | None = None,
        answer_attention_mask_a: torch.Tensor | None = None,
        answer_input_ids_b: torch.Tensor | None = None,
        answer_attention_mask_b: torch.Tensor | None = None,
        prompt_pooled: torch.Tensor | None = None,
        answer_pooled_a: torch.Tensor | None = None,
        answer_pooled_b: torch.Tensor | None = None,
        answer_flags_a: torch.Tensor | None = None,
        answer_flags_b: torch.Tensor | None = None,
    ) -> ArenaOutput | tuple:
        r"""
        Args:
            input_ids_a, attention_mask_a (`torch.LongTensor` of shape `(batch_size, seq_len)`): tower A,
                (prompt + response A) as built by `encoding_arena.encode_battles` and `ArenaCollator`.
            input_ids_b, attention_mask_b (`torch.LongTensor` of shape `(batch_size, seq_len_b)`): tower B.
            style_a, style_b (`torch.FloatTensor` of shape `(batch_size, len(STYLE_FEATURES))`, *optional*):
                style features of each side; required when `config.style_features`.
            labels (`torch.LongTensor` of shape `(batch_size,)` or `torch.FloatTensor` `(batch_size, 3)`,
                *optional*): class ids (0 = winner_model_a, 1 = winner_model_b, 2 = winner_tie) or soft labels.
            pooled_a, pooled_b (`torch.FloatTensor` of shape `(batch_size, hidden_size)`, *optional*): the towers'
                pooled embeddings (`encode()`), computed beforehand, instead of the token ids: how a head is trained
                on a frozen encoder (`pooled_towers.embed_towers`) without running the encoder every epoch.
            prompt_input_ids, answer_input_ids_a, answer_input_ids_b and their `*_attention_mask`
                (`torch.LongTensor` of shape `(batch_size, 2, len)`, *optional*): with `config.relevance`, the
                prompt and each answer on their own (whole text, last turn; `encoding_arena.encode_relevance`,
                collated by `ArenaCollator`). Or `prompt_pooled`, `answer_pooled_a`, `answer_pooled_b`
                (`(batch_size, 2, hidden_size)`): their vectors from `encode_relevance()`, computed beforehand.
            answer_flags_a, answer_flags_b (`torch.FloatTensor` of shape `(batch_size, len(ANSWER_FLAGS))`,
                *optional*): with `config.relevance`, `encoding_arena.answer_flags` of each answer.
        """
        if pooled_a is not None or pooled_b is not None:
            if pooled_a is None or pooled_b is None or input_ids_a is not None or input_ids_b is not None:
                raise ValueError("give either pooled_a and pooled_b, or the token ids of both towers")
        elif input_ids_a is None or input_ids_b is None or attention_mask_a is None or attention_mask_b is None:
            raise ValueError("input_ids_a, attention_mask_a, input_ids_b and attention_mask_b are required "
                             "(or pooled_a and pooled_b)")
        else:
            pooled_a, pooled_b = self.encode_towers(input_ids_a, attention_mask_a, input_ids_b, attention_mask_b)
        relevance = vectors = None
        if self.relevance_terms is not None:
            vectors = self._relevance_inputs(prompt_input_ids, prompt_attention_mask, answer_input_ids_a,
                                             answer_attention_mask_a, answer_input_ids_b, answer_attention_mask_b,
                                             prompt_pooled, answer_pooled_a, answer_pooled_b, answer_flags_a,
                                             answer_flags_b)
            features = (ArenaRelevanceTerms.features(vectors[0], vectors[1], vectors[3]),
                        ArenaRelevanceTerms.features(vectors[0], vectors[2], vectors[4]))
            relevance = self.relevance_terms(*features)
            relevance = (relevance, relevance + self.relevance_terms.content_terms(*features))
        pooled_a, pooled_b = self.dropout(pooled_a), self.dropout(pooled_b)
        logits, rewards, content_logits = self.compare(pooled_a, pooled_b, style_a, style_b, relevance=relevance)

        loss = None if labels is None else self.loss(logits, labels, rewards)
        weight = getattr(self.config, "content_pairs_weight", 0.0)
        if loss is not None and vectors is not None and self.training and weight > 0:
            loss = loss + weight * content_pair_loss(self.relevance_terms, *vectors, head=self.classifier,
                                                     towers=(pooled_a, pooled_b))
        if return_dict is False:
            return tuple(v for v in (loss, logits, rewards, content_logits) if v is not None)
        return ArenaOutput(loss=loss, logits=logits, rewards=rewards, content_logits=content_logits)

    def encode_relevance(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(B, 2, L)` texts encoded on their own (whole, last turn; a slot with an all-zero mask is not encoded and
        takes the whole text's vector: a single-turn battle's last turn is its whole text) -> `(B, 2, H)` pooled
        as the towers are (`encode`)."""
        batch, slots, length = input_ids.shape
        flat_ids, flat_mask = input_ids.reshape(-1, length), attention_mask.reshape(-1, length)
        used = flat_mask.any(-1)
        hidden = self.config.encoder_config.hidden_size
        out = torch.zeros((flat_ids.shape[0], hidden), device=input_ids.device)
        if bool(used.any()):
            out[used] = self.encode(*_trim(flat_ids[used], flat_mask[used])).float()
        out = out.reshape(batch, slots, hidden)
        last_given = attention_mask[:, 1].any(-1, keepdim=True)
        return torch.stack([out[:, 0], torch.where(last_given, out[:, 1], out[:, 0])], 1)

    def _relevance_inputs(self, prompt_ids, prompt_mask, ids_a, mask_a, ids_b, mask_b, prompt_pooled, pooled_a,
                          pooled_b, flags_a, flags_b) -> tuple[torch.Tensor, ...]:
        """(prompt, answer A, answer B) vectors `(B, 2, H)` and the flags `(B, F)` of A and B, from the token ids
        (encoded here) or from vectors computed beforehand."""
        if flags_a is None or flags_b is None:
            raise ValueError("answer_flags_a and answer_flags_b are required: this model has relevance terms "
                             "(config.relevance=True); build inputs with encoding_arena.encode_relevance")
        if prompt_pooled is not None and pooled_a is not None and pooled_b is not None:
            return prompt_pooled, pooled_a, pooled_b, flags_a, flags_b
        if any(x is None for x in (prompt_ids, prompt_mask, ids_a, mask_a, ids_b, mask_b)):
            raise ValueError("this model has relevance terms (config.relevance=True): give prompt_input_ids, "
                             "answer_input_ids_a/b and their attention masks (encoding_arena.encode_relevance), or "
                             "prompt_pooled and answer_pooled_a/b")
        # one encoder call for the three texts: they share one padded length (ArenaCollator)
        vectors = self.encode_relevance(torch.cat([prompt_ids, ids_a, ids_b]), torch.cat([prompt_mask, mask_a, mask_b]))
        prompt, answer_a, answer_b = vectors.split(prompt_ids.shape[0])
        return prompt, answer_a, answer_b, flags_a, flags_b

    def encode_towers(
        self,
        input_ids_a: torch.Tensor,
        attention_mask_a: torch.Tensor,
        input_ids_b: torch.Tensor,
        attention_mask_b: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, L_a)` and `(B, L_b)` towers -> `(B, H)` pooled A, `(B, H)` pooled B.

        One encoder call per side, each trimmed to its own longest tower: no attention is spent on the padding that
        collating both sides to one length adds.
        """
        return (self.encode(*_trim(input_ids_a, attention_mask_a)),
                self.encode(*_trim(input_ids_b, attention_mask_b)))

    def compare(
        self,
        pooled_a: torch.Tensor,
        pooled_b: torch.Tensor,
        style_a: torch.Tensor | None = None,
        style_b: torch.Tensor | None = None,
        relevance: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The head: `(B, H)` pooled towers (and `(B, F)` style features) -> `(B, 3)` logits, `(B, 2)` rewards with
        the rank head (else None) and `(B, 3)` content logits (the logits without the style terms; the logits
        themselves when the model has no style features). Logits are divided by the temperature. `relevance`:
        the relevance terms `(B, 3)` of the full view and of the content view (`ArenaRelevanceTerms`), added to
        the logits and to the content logits respectively."""
        rewards = None
        if self.joint_head is not None:  # the cross-encoder: pooled_a, pooled_b are the orders (a, b), (b, a)
            if self.joint_head.style is not None:
                style_a, style_b = self._check_style(style_a, "style_a"), self._check_style(style_b, "style_b")
            logits, content = self.joint_head(pooled_a, pooled_b, style_a, style_b)
            content = logits if content is None else content
            temperature = self.config.temperature
            return logits / temperature, None, content / temperature
        if self.classifier is not None:
            if self.classifier.style is not None:
                style_a, style_b = self._check_style(style_a, "style_a"), self._check_style(style_b, "style_b")
            logits, content = self.classifier(pooled_a, pooled_b, style_a, style_b)
        else:
            if self.ranker.style_reward is not None:
                style_a, style_b = self._check_style(style_a, "style_a"), self._check_style(style_b, "style_b")
            logits, content, rewards = self.ranker(pooled_a, pooled_b, style_a, style_b)
        if content is None:
            content = logits
        if relevance is not None:  # `(B, 3)` relevance terms of the full view and of the content view
            logits, content = logits + relevance[0].to(logits.dtype), content + relevance[1].to(content.dtype)
        temperature = self.config.temperature
        return logits.float() / temperature, rewards, content.float() / temperature

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, rewards: torch.Tensor | None = None) -> torch.Tensor:
        """Log loss on `(B, 3)` logits; class ids `(B,)` or soft labels `(B, 3)`. With rank_loss="mse", the seed's
        regression of r_A - r_B toward +1 / -1 / 0, plus the log loss that fits nu and the scale (gap detached)."""
        target = labels.to(logits.device)
        if target.is_floating_point() and target.ndim == 1:
            raise ValueError("labels: float labels must be soft labels of shape (batch_size, 3)")
        log_loss = F.cross_entropy(logits, target)
        if self.config.head == "rank" and self.config.rank_loss == "mse":
            probs = target if target.ndim == 2 else F.one_hot(target, 3).to(logits.dtype)
            gap = rewards[:, 0] - rewards[:, 1]
            return F.mse_loss(gap.float(), probs[:, 0] - probs[:, 1]) + log_loss
        return log_loss


ArenaConfig.register_for_auto_class()
ArenaModel.register_for_auto_class("AutoModel")

try:  # local use (in-process Auto classes); a remote-code load needs none of this
    from transformers import AutoConfig

    AutoConfig.register("arena-preference", ArenaConfig, exist_ok=True)
    AutoModel.register(ArenaConfig, ArenaModel, exist_ok=True)
    AutoModelForSequenceClassification.register(ArenaConfig, ArenaModel, exist_ok=True)
except ValueError:
    pass


# The pipeline task is registered when pipeline_arena is imported, so `pipeline("arena-preference", model=<ArenaModel>)`
# works wherever this module loaded. A relative import: remote code copies the modules this file imports relatively
# (pipeline_arena, and precision_arena through it) next to it, so the task exists on a machine that has only torch
# and transformers; the try keeps the fallback import out of the imports transformers demands of remote code.
try:
    from .pipeline_arena import ArenaPreferencePipeline  # noqa: F401, E402
except ImportError:
    from pipeline_arena import ArenaPreferencePipeline  # noqa: F401, E402

__all__ = [
    "ArenaClassifyHead", "ArenaRelevanceTerms", "content_pair_loss", "tower_gap", "ArenaModel", "ArenaRankHead",
    "ArenaOutput", "ArenaPreTrainedModel", "ModelFilesError", "check_model_files", "davidson_logits",
    "normalised_differences", "pool",
    "ArenaJointHead", "last_token", "mask_positions",
]
