"""make-data's per-batch work: the target's responses, one pass of each model, labels and the cached head inputs.

See `hf_specdecpp.training.data` for the pipeline these steps implement (SpecDec++, arXiv 2405.19715).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..head import confidence_features
from .labels import DecodingSettings, acceptance_labels, mix_tokens, process_logits
from .tokens import pack_batch


@torch.no_grad()
def response_logits(model, ids, mask, position_ids, P: int, N: int) -> torch.Tensor:
    """Logits `(B, N, V)` predicting response tokens 0..N-1 (i.e. at positions P-1 .. P+N-2)."""
    keep = torch.arange(P - 1, P + N - 1, device=ids.device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, logits_to_keep=keep, use_cache=False)
    return out.logits


def _last_hidden(model, ids, mask, position_ids) -> torch.Tensor:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is not None and decoder is not model:
        return decoder(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False).last_hidden_state
    return model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False,
                 output_hidden_states=True, logits_to_keep=1).hidden_states[-1]


@torch.no_grad()
def response_hidden(model, ids, mask, position_ids, P: int, N: int) -> torch.Tensor:
    """The draft's last hidden state (post final norm) `(B, N, H)` at the positions HOLDING response tokens."""
    return _last_hidden(model, ids, mask, position_ids)[:, P:P + N]


@torch.no_grad()
def producing_hidden_and_logits(model, ids, mask, position_ids, P: int, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The draft's last hidden states `(B, N, H)` that PRODUCE response tokens 0..N-1 (positions P-1 .. P+N-2)
    and the logits `(B, N, V)` computed from them: one forward pass."""
    hidden = _last_hidden(model, ids, mask, position_ids)[:, P - 1:P + N - 1]
    return hidden, model.get_output_embeddings()(hidden)


@torch.no_grad()
def generate_responses(target, prompts: Sequence[Sequence[int]], settings: DecodingSettings, max_new_tokens: int,
                       pad_id: int, eos_ids: list[int], device: torch.device) -> list[list[int]]:
    """Batched target generation (left padding + attention mask) with exactly the served decoding settings."""
    from transformers import GenerationConfig

    ids, mask, _, P, _ = pack_batch(prompts, [[] for _ in prompts], pad_id, device)
    ids, mask = ids[:, :P], mask[:, :P]
    old = target.generation_config
    # A fresh config: the checkpoint's own defaults (repetition penalty, top-k, ...) must not leak in.
    target.generation_config = GenerationConfig(
        pad_token_id=pad_id, eos_token_id=eos_ids or None, bos_token_id=old.bos_token_id,
        **settings.generation_kwargs(),
    )
    try:
        out = target.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens)
    finally:
        target.generation_config = old
    responses = []
    for row in out[:, P:].tolist():
        cut = len(row)
        for i, tok in enumerate(row):
            if tok in eos_ids:
                cut = i + 1
                break
        responses.append(row[:cut])
    return responses


def process_batch(draft, target, prompts, responses, *, settings: DecodingSettings, mix_ratio: float, vocab,
                  with_calibration: bool, pad_id: int, device: torch.device, sample_gen: torch.Generator,
                  mix_gen: torch.Generator, responses_are_target_argmax: bool = False,
                  drafted_token: bool = True) -> list[dict]:
    """Labels and cached head inputs for a batch of (prompt ids, response ids); one record per response.

    `drafted_token=False` stores only producing-state inputs: no draft passes over the mixed tokens or the r = 0
    calibration tokens (about 40% less work per batch); the drafted-token columns stay empty.

    `responses_are_target_argmax`: the responses are the target's own greedy output, so each response token
    IS the target's argmax at its position and the greedy label needs no target forward pass.
    """
    greedy_from_target = responses_are_target_argmax and settings.greedy
    records, mixed, drafted = _label_responses(draft, target, prompts, responses, settings, mix_ratio, vocab, pad_id,
                                               device, sample_gen, mix_gen, greedy_from_target)
    if not drafted_token:
        return [_without_drafted_token_inputs(rec, draft) for rec in records]
    hidden = _draft_states(draft, prompts, mixed, pad_id, device)
    for b, rec in enumerate(records):
        n = len(rec["response_tokens"])
        sel = rec.pop("is_draft")
        labels_all = rec.pop("labels_all")
        rec["positions"] = torch.nonzero(sel).squeeze(-1).tolist()
        rec["labels"] = labels_all[sel].numpy().astype(np.float32)
        rec["hidden"] = hidden[b, :n][sel].numpy()
        if with_calibration:
            rec["calib_labels"] = labels_all.numpy().astype(np.float32)
    if with_calibration:  # r = 0: every response position holds the draft token
        hidden = _draft_states(draft, prompts, drafted, pad_id, device)
        for b, rec in enumerate(records):
            rec["calib_hidden"] = hidden[b, :len(rec["response_tokens"])].numpy()
    return records


def _without_drafted_token_inputs(rec: dict, draft) -> dict:
    """A record with empty drafted-token columns (positions, labels, hidden)."""
    rec.pop("is_draft"), rec.pop("labels_all")
    hidden_size = rec["context_hidden"].shape[-1]
    return rec | {"positions": [], "labels": np.zeros(0, np.float32), "hidden": np.zeros((0, hidden_size), np.float16)}


def _draft_states(draft, prompts, responses, pad_id: int, device: torch.device) -> torch.Tensor:
    """The draft's float16 hidden states (on the CPU) at the positions holding `responses`."""
    ids, mask, pos, P, N = pack_batch(prompts, responses, pad_id, device)
    return response_hidden(draft, ids, mask, pos, P, N).to(torch.float16).cpu()


def _label_responses(draft, target, prompts, responses, settings, mix_ratio, vocab, pad_id, device, sample_gen,
                     mix_gen, greedy_from_target) -> tuple[list[dict], list[list[int]], list[list[int]]]:
    """One pass of each model over prompt + X: per response, the draft tokens Y, their labels, the mixed tokens
    Z and the producing-state columns; returns (records, Z per response, Y per response)."""
    ids, mask, pos, P, N = pack_batch(prompts, responses, pad_id, device)
    t_logits = None if greedy_from_target else response_logits(target, ids, mask, pos, P, N)
    d_hidden, d_logits = producing_hidden_and_logits(draft, ids, mask, pos, P, N)
    d_logits = vocab.draft_scores_for_target(d_logits)  # the draft proposes within the target's vocabulary
    records, mixed, drafted = [], [], []
    for b, resp in enumerate(responses):
        n = len(resp)
        x = torch.tensor(resp, dtype=torch.long, device=d_logits.device)
        if greedy_from_target:
            y = d_logits[b, :n].argmax(dim=-1)
            labels = (y == x).float()
        else:
            y, labels = acceptance_labels(t_logits[b, :n], d_logits[b, :n], settings, generator=sample_gen)
        z, is_draft = mix_tokens(x, y, mix_ratio, generator=mix_gen)
        mixed.append(z.tolist())
        drafted.append(y.tolist())
        features = confidence_features(process_logits(d_logits[b, :n], settings), y)
        records.append({"labels_all": labels.float().cpu(), "is_draft": is_draft.cpu(), "draft_tokens": y.tolist(),
                        "response_tokens": list(resp), "prompt_length": len(prompts[b]),
                        "context_hidden": d_hidden[b, :n].to(torch.float16).cpu().numpy(),
                        "context_features": features.cpu().numpy().astype(np.float32),
                        "context_labels": labels.float().cpu().numpy().astype(np.float32)})
    return records, mixed, drafted
