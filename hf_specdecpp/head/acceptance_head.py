"""The SpecDec++ acceptance head: predicts whether a drafted token will be accepted by the target."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# SpecDec++ acceptance head

An acceptance head for [SpecDec++](https://arxiv.org/abs/2405.19715) speculative decoding with
the `hf-specdecpp` package (`pip install hf-specdecpp`). It reads the draft model's last hidden state
and predicts the probability that the drafted token is accepted by the target model; drafting stops once
the predicted probability of at least one rejection exceeds the threshold.

- draft model: `{{ draft_model_id }}`
- target model: `{{ target_model_id }}`
- hidden size / residual blocks: {{ hidden_size }} / {{ num_layers }}
- input: {{ input_description }}
- decoding the head was trained for: {{ decoding }}
- recommended threshold: {{ recommended_threshold }}
- most candidates per round: {{ recommended_max_candidates }}

## Usage

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
import hf_specdecpp
from hf_specdecpp import AcceptanceHead, SpecDecPPCandidateGenerator

tokenizer = AutoTokenizer.from_pretrained("{{ target_model_id }}")
target = AutoModelForCausalLM.from_pretrained("{{ target_model_id }}")
draft = AutoModelForCausalLM.from_pretrained("{{ draft_model_id }}")
head = AcceptanceHead.from_pretrained("{{ repo_id }}")

inputs = tokenizer("def fibonacci(n):", return_tensors="pt")
out = target.generate(
    **inputs,
    assistant_model=draft,
    candidate_generator=SpecDecPPCandidateGenerator(head=head),
    max_new_tokens=128,
)
print(tokenizer.decode(out[0], skip_special_tokens=True))
```

{{ extra_sections }}
"""


DEFAULT_MAX_CANDIDATES = 20
"""Candidates per round allowed when a head carries no calibrated `recommended_max_candidates`."""

DRAFTED_TOKEN = "drafted_token"
"""`input_state`: the head reads the hidden state AT the drafted token (reference SpecDec++). That state exists only
after the draft has read the token, i.e. one draft step later: the decision to stop lags one token behind."""

PRODUCING_STATE = "producing_state"
"""`input_state`: the head reads the hidden state that PRODUCED the drafted token (the one whose logits it was drawn
from), plus optional confidence features of that distribution. Every token is scored as soon as it is drafted."""

INPUT_STATES = (DRAFTED_TOKEN, PRODUCING_STATE)

CONFIDENCE_FEATURES = ("log_q_token", "log_q_max", "entropy")
"""Features of the draft distribution a token was drawn from: log-probability of the token, of the most likely
token, and the entropy (nats)."""


def confidence_features(scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """`CONFIDENCE_FEATURES` `(..., 3)` of the distributions `softmax(scores)` `(..., V)` and drawn `tokens` `(...)`.

    `scores` are the processed logits the tokens were drawn from (greedy: the logits; sampling: after
    temperature / top-k / top-p, where removed tokens hold -inf). Computed in float32.
    """
    log_q = torch.log_softmax(scores.float(), dim=-1)
    log_q_token = log_q.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)
    entropy = torch.special.entr(log_q.exp()).sum(dim=-1)
    return torch.stack([log_q_token, log_q.max(dim=-1).values, entropy], dim=-1)


class ResidualBlock(nn.Module):
    """`x + SiLU(Linear(x))`, one block of the acceptance head."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, hidden_size)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.linear(x))


class AcceptanceHead(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="hf-specdecpp",
    tags=["speculative-decoding", "specdec++", "acceptance-head"],
    paper_url="https://arxiv.org/abs/2405.19715",
    model_card_template=MODEL_CARD_TEMPLATE,
):
    """SpecDec++ acceptance head.

    `num_layers` independent residual blocks `x + SiLU(Linear(x))` followed by a linear layer to one logit;
    calling the head on draft hidden states `(..., hidden_size)` returns acceptance probabilities `(...)`.
    The reference implementation's two-logit output is equivalent (softmax over two logits is the sigmoid of
    their difference), so its checkpoints convert exactly (see `from_pretrained`).

    `input_state` says which hidden state the head reads: `"drafted_token"` (the reference: the state at the
    drafted token, available one draft step later) or `"producing_state"` (the state whose logits produced the
    token: no lag, so a round may stop after one token). With `use_confidence_features=True` (producing-state
    heads only) a linear term on `confidence_features(scores, token)` is added to the logit; the hidden-state
    classifier then starts at zero, so training begins from the confidence-only predictor.

    The remaining arguments are metadata stored in `config.json`: the draft and target model ids, the
    decoding temperature the head was trained for (0 for greedy), the recommended rejection threshold and the
    draft/target cost ratio it was calibrated for.
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int = 3,
        draft_model_id: str | None = None,
        target_model_id: str | None = None,
        temperature: float | None = None,
        recommended_threshold: float | None = None,
        cost_ratio: float | None = None,
        training_info: dict | None = None,
        recommended_max_candidates: int | None = None,
        input_state: str = DRAFTED_TOKEN,
        use_confidence_features: bool = False,
    ):
        super().__init__()
        if hidden_size < 1 or num_layers < 0:
            raise ValueError(f"hidden_size must be >= 1 and num_layers >= 0, got {hidden_size} and {num_layers}")
        if input_state not in INPUT_STATES:
            raise ValueError(f"input_state must be one of {INPUT_STATES}, got {input_state!r}")
        if use_confidence_features and input_state != PRODUCING_STATE:
            raise ValueError("Confidence features describe the distribution a token was drawn from: they need "
                             f"input_state={PRODUCING_STATE!r}")
        self.input_state = input_state
        self.use_confidence_features = bool(use_confidence_features)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.draft_model_id = draft_model_id
        self.target_model_id = target_model_id
        self.temperature = temperature
        self.recommended_threshold = recommended_threshold
        self.recommended_max_candidates = recommended_max_candidates
        self.cost_ratio = cost_ratio
        self.training_info = training_info or {}
        self.blocks = nn.ModuleList(ResidualBlock(hidden_size) for _ in range(num_layers))
        self.classifier = nn.Linear(hidden_size, 1)
        self.feature_classifier = None
        if self.use_confidence_features:
            self.feature_classifier = nn.Linear(len(CONFIDENCE_FEATURES), 1)
            nn.init.zeros_(self.classifier.weight)
            nn.init.zeros_(self.classifier.bias)

    @property
    def scores_without_lag(self) -> bool:
        """True when the head scores a drafted token from the state that produced it (no one-step lag)."""
        return self.input_state == PRODUCING_STATE

    def logits(self, hidden_states: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Acceptance logits `(...)` for hidden states `(..., hidden_size)` (and `(..., 3)` confidence features)."""
        x = hidden_states.to(self.classifier.weight.dtype)
        for block in self.blocks:
            x = block(x)
        out = self.classifier(x).squeeze(-1)
        if self.feature_classifier is not None:
            if features is None:
                raise ValueError("This acceptance head also reads confidence features: pass `features=` "
                                 "(see `hf_specdecpp.head.confidence_features`).")
            out = out + self.feature_classifier(features.to(out.dtype)).squeeze(-1)
        return out

    def forward(self, hidden_states: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted acceptance probabilities `(...)` for hidden states `(..., hidden_size)`."""
        return torch.sigmoid(self.logits(hidden_states, features))

    def predict_drafted(self, hidden_states: torch.Tensor, scores: torch.Tensor,
                        tokens: torch.Tensor) -> torch.Tensor:
        """Acceptance probabilities of `tokens` drawn from `scores` at `hidden_states` (producing-state heads)."""
        features = confidence_features(scores, tokens) if self.use_confidence_features else None
        return self(hidden_states.float(), features)

    def score_step(self, hidden_states: torch.Tensor, scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The head's prediction after one drafting step that read `hidden_states` and drew `tokens` from `scores`.

        A producing-state head predicts the acceptance of `tokens`; a drafted-token head that of the token AT
        `hidden_states`, i.e. the previously drafted one (the one-step lag).
        """
        if self.scores_without_lag:
            return self.predict_drafted(hidden_states, scores, tokens)
        return self(hidden_states.float())

    # ------------------------------------------------------------------ Hub I/O
    def update_config(self, **values: Any) -> None:
        """Set metadata fields (e.g. `recommended_threshold`) so that `save_pretrained` records them."""
        for key, value in values.items():
            if key not in ("draft_model_id", "target_model_id", "temperature", "recommended_threshold",
                           "recommended_max_candidates", "cost_ratio", "training_info"):
                raise KeyError(f"{key!r} is not a metadata field of AcceptanceHead")
            setattr(self, key, value)
            if isinstance(self._hub_mixin_config, dict):
                self._hub_mixin_config[key] = value

    def generate_model_card(self, *args, **kwargs):
        info = self.training_info or {}
        extra = kwargs.pop("extra_sections", None) or info.get("model_card_extra", "")
        decoding = "greedy" if self.temperature in (None, 0, 0.0) else f"sampling, temperature {self.temperature}"
        return super().generate_model_card(
            *args,
            draft_model_id=self.draft_model_id or "<draft model id>",
            target_model_id=self.target_model_id or "<target model id>",
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            input_description=self.input_description(),
            decoding=decoding,
            recommended_threshold=self.recommended_threshold,
            recommended_max_candidates=self.recommended_max_candidates
            or f"not calibrated (default {DEFAULT_MAX_CANDIDATES})",
            repo_id=kwargs.pop("repo_id", None) or "<this repo>",
            extra_sections=extra,
            **kwargs,
        )

    def input_description(self) -> str:
        """One line for model cards: which state the head reads and whether it scores without lag."""
        if not self.scores_without_lag:
            return "the draft's hidden state at the drafted token (reference SpecDec++; scored one step later)"
        extra = " plus the draft distribution's confidence features" if self.use_confidence_features else ""
        return f"the draft's hidden state that produced the drafted token{extra} (scored as soon as it is drafted)"

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict[str, Any] | None = None, **kwargs):
        """`PyTorchModelHubMixin.push_to_hub`, with `repo_id` filled into the model card's usage snippet."""
        model_card_kwargs = {"repo_id": repo_id, **(model_card_kwargs or {})}
        return super().push_to_hub(repo_id, model_card_kwargs=model_card_kwargs, **kwargs)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs,
    ) -> "AcceptanceHead":
        """Load strictly from `model.safetensors`, or from a reference-format `pytorch_model.bin`."""
        if "hidden_size" not in model_kwargs:
            if not os.path.isdir(model_id):
                # The mixin swallows Hub errors while fetching config.json: fetch it again so that a missing repo or
                # revision surfaces as huggingface_hub's own error instead of a misleading config error.
                try:
                    hf_hub_download(
                        repo_id=model_id, filename=constants.CONFIG_NAME, revision=revision, cache_dir=cache_dir,
                        force_download=force_download, token=token, local_files_only=local_files_only,
                    )
                except EntryNotFoundError:
                    pass  # the repo exists but has no config.json: reported below
            raise OSError(
                f"No usable config.json for an acceptance head in {model_id!r}: it must record `hidden_size` "
                "(and `num_layers`)."
            )

        def resolve(filename: str) -> str | None:
            if os.path.isdir(model_id):
                path = os.path.join(model_id, filename)
                return path if os.path.isfile(path) else None
            try:
                return hf_hub_download(
                    repo_id=model_id, filename=filename, revision=revision, cache_dir=cache_dir,
                    force_download=force_download, token=token, local_files_only=local_files_only,
                )
            except EntryNotFoundError:
                return None

        model = cls(**model_kwargs)
        weights = resolve(constants.SAFETENSORS_SINGLE_FILE)
        if weights is not None:
            try:
                state_dict = load_file(weights, device="cpu")
            except (SafetensorError, OSError, ValueError) as err:
                raise OSError(f"Could not read acceptance-head weights {weights}: {err}") from err
        else:
            weights = resolve(constants.PYTORCH_WEIGHTS_NAME)
            if weights is None:
                raise OSError(
                    f"No acceptance-head weights in {model_id!r}: expected {constants.SAFETENSORS_SINGLE_FILE} "
                    f"or {constants.PYTORCH_WEIGHTS_NAME} (reference format)."
                )
            try:
                state_dict = torch.load(weights, map_location="cpu", weights_only=True)
            except Exception as err:  # torch raises many types for corrupt pickles
                raise OSError(f"Could not read acceptance-head weights {weights}: {err}") from err
            state_dict = convert_reference_state_dict(state_dict, model.num_layers)
        load_state_dict_checked(model, state_dict, weights, strict=strict)
        model.to(map_location)
        model.eval()
        return model


def convert_reference_state_dict(state_dict: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Map a reference SpecDec++ checkpoint (`model.{i}.linear.*`, `model.{D}.*` with 2 logits) to our keys.

    Keys that are not in the reference layout are passed through unchanged, so strict loading reports them.
    """
    converted: dict[str, torch.Tensor] = {}
    final = f"model.{num_layers}."
    for key, value in state_dict.items():
        if key.startswith(final) and value.shape[0] == 2:
            # softmax([l0, l1])[1] == sigmoid(l1 - l0): the two-logit layer becomes one logit.
            converted["classifier." + key[len(final):]] = (value[1] - value[0]).unsqueeze(0)
        elif key.startswith("model.") and ".linear." in key:
            converted["blocks." + key[len("model."):]] = value
        else:
            converted[key] = value
    return converted


def load_state_dict_checked(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str, strict: bool = True):
    """`load_state_dict` whose errors name the file and the offending keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    )
    if mismatched or (strict and (missing or unexpected)):
        problems = []
        if missing:
            problems.append(f"missing keys {missing}")
        if unexpected:
            problems.append(f"unexpected keys {unexpected}")
        if mismatched:
            problems.append(f"shape mismatches {mismatched}")
        raise ValueError(f"Acceptance-head weights in {source} do not fit the head's config: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=strict)


def read_head_config(path: str | os.PathLike) -> dict:
    """The JSON config of a saved head directory."""
    with open(Path(path) / constants.CONFIG_NAME, encoding="utf-8") as f:
        return json.load(f)
