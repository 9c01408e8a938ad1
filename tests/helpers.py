"""Small builders shared by the inference tests."""

from __future__ import annotations

import math

import torch

from hf_specdecpp import AcceptanceHead
from hf_specdecpp.head import PRODUCING_STATE


def constant_head(hidden_size: int, probability: float, num_layers: int = 1) -> AcceptanceHead:
    """A head that predicts the same acceptance probability for every hidden state."""
    head = AcceptanceHead(hidden_size, num_layers)
    p = min(max(probability, 1e-12), 1 - 1e-12)
    with torch.no_grad():
        head.classifier.weight.zero_()
        head.classifier.bias.fill_(math.log(p / (1 - p)))
    return head


def random_head(hidden_size: int, seed: int = 0, num_layers: int = 2) -> AcceptanceHead:
    """An untrained head whose predictions vary from token to token, mostly in (0.3, 0.99)."""
    torch.manual_seed(seed)
    head = AcceptanceHead(hidden_size, num_layers)
    with torch.no_grad():
        head.classifier.weight.mul_(4.0)
        head.classifier.bias.fill_(2.0)
    return head


def producing_head(hidden_size: int, probability: float | None = None, feature_weights=(3.0, 0.0, -1.0),
                   bias: float = 2.0, num_layers: int = 1) -> AcceptanceHead:
    """A producing-state head with confidence features (no lag).

    With `probability` it predicts that constant; otherwise its prediction follows the drafted token's draft
    log-probability and the entropy (`feature_weights` on `CONFIDENCE_FEATURES`), so rounds vary in length.
    """
    head = AcceptanceHead(hidden_size, num_layers, input_state=PRODUCING_STATE, use_confidence_features=True)
    with torch.no_grad():
        head.classifier.weight.zero_()
        head.classifier.bias.zero_()
        if probability is not None:
            p = min(max(probability, 1e-12), 1 - 1e-12)
            head.feature_classifier.weight.zero_()
            head.feature_classifier.bias.fill_(math.log(p / (1 - p)))
        else:
            head.feature_classifier.weight.copy_(torch.tensor([list(feature_weights)]))
            head.feature_classifier.bias.fill_(bias)
    return head


def tv_and_bound(counts: dict, exact: dict, num_samples: int, delta: float) -> tuple[float, float]:
    """Total-variation distance of empirical `counts` to the `exact` law, and the bound it stays below with
    probability 1 - delta when the samples follow `exact` (E[TV] <= 0.5 * sum sqrt(p / N), plus McDiarmid)."""
    tv = 0.5 * sum(abs(counts.get(k, 0) / num_samples - p) for k, p in exact.items())
    tv += 0.5 * sum(c / num_samples for k, c in counts.items() if k not in exact)
    bound = 0.5 * sum(math.sqrt(p / num_samples) for p in exact.values()) + math.sqrt(
        math.log(1 / delta) / (2 * num_samples)
    )
    return tv, bound


def stop_and_process_kwargs() -> dict:
    """generate() kwargs with a user stopping criterion (stop at length 20), a user logits processor and a
    repetition penalty: the features a plug-in decoding loop must honour like generate() does."""
    from transformers import LogitsProcessorList, NoRepeatNGramLogitsProcessor, StoppingCriteria, StoppingCriteriaList

    class StopAtLength(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= 20, dtype=torch.bool)

    return dict(
        do_sample=False,
        max_new_tokens=30,
        stopping_criteria=StoppingCriteriaList([StopAtLength()]),
        logits_processor=LogitsProcessorList([NoRepeatNGramLogitsProcessor(2)]),
        repetition_penalty=1.3,
    )


class CollectingStreamer:
    """A streamer (transformers' `put`/`end` protocol) that records every chunk it is given."""

    def __init__(self):
        self.chunks, self.ended = [], False

    def put(self, value):
        self.chunks.append(value.reshape(-1).tolist())

    def end(self):
        self.ended = True


def scripted_head(input_state: str = "drafted_token") -> AcceptanceHead:
    """A head whose prediction is sigmoid of the first hidden component: `scripted_state(p)` makes it predict p."""
    head = AcceptanceHead(hidden_size=2, num_layers=0, input_state=input_state)
    with torch.no_grad():
        head.classifier.weight.copy_(torch.tensor([[1.0, 0.0]]))
        head.classifier.bias.zero_()
    return head


def scripted_state(*probabilities: float) -> torch.Tensor:
    """Hidden states `(rows, 2)` for which `scripted_head` predicts `probabilities`."""
    return torch.tensor([[math.log(p / (1 - p)), 0.0] for p in probabilities])


def training_workspace(root, num_prompts: int = 24) -> tuple:
    """(target folder, draft folder, prompts.jsonl) of a tiny pair saved under `root`, for the training commands."""
    import json

    from hf_specdecpp.testing import save_tiny_pair, tiny_prompts

    target, draft = save_tiny_pair(root / "models", noise=0.3, seed=0)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in tiny_prompts(num_prompts, seed=0)))
    return target, draft, prompts
