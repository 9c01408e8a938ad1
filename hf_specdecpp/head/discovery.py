"""Finding the acceptance head for a draft/target pair on the Hub, by the pair its model card names.

A head's model card lists its draft and target as `base_model` metadata (when both are Hub ids), next to the
library's tags. `find_heads` lists the Hub's acceptance heads (`LIBRARY_TAG`) with their card metadata and keeps
those whose `base_model` names both models; `AcceptanceHead.for_pair` loads the first one whose own training
record agrees (a card can be edited by hand; the head's `training_info` is what it was trained for).
"""

from __future__ import annotations

import os
import re
from typing import Any

LIBRARY_TAG = "acceptance-head"
"""The tag every head the package pushes carries (`AcceptanceHead`'s model card tags)."""

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HeadNotFoundError(LookupError):
    """No acceptance head for the pair was found on the Hub."""


class WrongPairError(ValueError):
    """A head trained for one draft/target pair was asked to serve another."""


def is_repo_id(name: Any) -> bool:
    """Whether `name` looks like a Hub repo id (`namespace/name`) and is not a local folder."""
    return isinstance(name, str) and bool(_REPO_ID.match(name)) and not os.path.exists(name)


def base_models(card_data: Any) -> list[str]:
    """The `base_model` entries of a model card's metadata (a mapping or a `ModelCardData`)."""
    value = card_data.get("base_model") if card_data is not None else None
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def find_heads(draft_model_id: str, target_model_id: str, api: Any = None) -> list[str]:
    """Repo ids of the Hub's acceptance heads whose model card names both models as `base_model`.

    Args:
        draft_model_id: the draft's Hub id, e.g. `Qwen/Qwen2.5-Coder-0.5B-Instruct`.
        target_model_id: the target's Hub id.
        api: an `HfApi` (default: a new one, with the user's token and endpoint).

    Returns:
        Matching repo ids, most downloaded first.
    """
    from huggingface_hub import HfApi

    api = api or HfApi()
    listing = api.list_models(filter=LIBRARY_TAG, cardData=True, sort="downloads")
    return [model.id for model in listing
            if {draft_model_id, target_model_id} <= set(base_models(getattr(model, "card_data", None)))]


def check_pair(recorded: tuple[str | None, str | None], wanted: tuple[str, str], where: str) -> None:
    """Refuse a head whose recorded (draft, target) differs from the pair it should serve.

    Args:
        recorded: the head's `(draft_model_id, target_model_id)`; `None` entries are not checked.
        wanted: the pair the caller decodes with.
        where: the head's name for the message.
    """
    for role, have, want in zip(("draft", "target"), recorded, wanted):
        if have is not None and is_repo_id(have) and is_repo_id(want) and have != want:
            raise WrongPairError(
                f"The acceptance head {where} was trained for {recorded[0]} -> {recorded[1]}, not for {wanted[0]} -> "
                f"{wanted[1]} (its {role} differs): a head predicts one pair's acceptances. Train one for this pair "
                "(hf-specdecpp make-data / train / calibrate) or use AcceptanceHead.for_pair(draft_id, target_id).")
