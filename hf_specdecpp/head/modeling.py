"""The SpecDec++ acceptance head: predicts whether a drafted token will be accepted by the target."""

from __future__ import annotations

import copy
import json
import os
import threading
import weakref
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from safetensors.torch import load_file, save_file
from torch import nn

from ..utils.folders import local_folder
from ..utils.io import FileFormatError, read_json_object, readable_by_others, write_json
from .card import CARD_TEMPLATE, describe_decoding, is_unedited_package_card, policy_section, sign, training_section
from .checkpoint import (
    ARCHITECTURE_KEYS,
    FORMAT_VERSION,
    HEAD_MODEL_TYPE,
    check_shapes,
    expected_shapes,
    is_head_config,
    load_reference_state_dict,
    read_traces,
    safetensors_shapes,
    split_legacy_config,
    validate_architecture,
)
from .features import CONFIDENCE_FEATURES, DRAFTED_TOKEN, INPUT_STATES, PRODUCING_STATE, confidence_features, \
    distribution_features
from .policy import POLICY_FILE, HeadPolicy

TRAINING_INFO_FILE = "training_info.json"
TRACES_FILE = "traces.safetensors"
OWNED_FILES = (constants.CONFIG_NAME, constants.SAFETENSORS_SINGLE_FILE, POLICY_FILE, TRAINING_INFO_FILE,
               TRACES_FILE)


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
    model_card_template=CARD_TEMPLATE,
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

    The constructor takes the architecture only (it is what `config.json` holds). A trained head also carries
    `policy` (the calibrated `HeadPolicy`, saved as `policy.json`), `training_info` (provenance: models, data,
    training arguments and metrics, saved as `training_info.json` and shown in the model card) and `traces`
    (the dev-set traces re-calibration simulates, saved as `traces.safetensors`).

    Args:
        hidden_size (`int`):
            The draft model's hidden size (the width of the states the head reads).
        num_layers (`int`, *optional*, defaults to 3):
            Residual blocks before the classifier.
        input_state (`str`, *optional*, defaults to `"drafted_token"`):
            `"drafted_token"` (the reference layout, one-step lag) or `"producing_state"` (no lag).
        use_confidence_features (`bool`, *optional*, defaults to `False`):
            Add a linear term on the draft distribution's confidence features (producing-state heads only).
    """

    def __init__(self, hidden_size: int, num_layers: int = 3, input_state: str = DRAFTED_TOKEN,
                 use_confidence_features: bool = False):
        super().__init__()
        architecture = validate_architecture(
            {"hidden_size": hidden_size, "num_layers": num_layers, "input_state": input_state,
             "use_confidence_features": use_confidence_features}, "AcceptanceHead")
        self.hidden_size = architecture["hidden_size"]
        self.num_layers = architecture["num_layers"]
        self.input_state = architecture["input_state"]
        self.use_confidence_features = architecture["use_confidence_features"]
        self.policy: HeadPolicy | None = None
        self.training_info: dict[str, Any] = {}
        self.traces: dict[str, torch.Tensor] | None = None
        self.blocks = nn.ModuleList(ResidualBlock(hidden_size) for _ in range(num_layers))
        self.classifier = nn.Linear(hidden_size, 1)
        self.feature_classifier = None
        if self.use_confidence_features:
            self.feature_classifier = nn.Linear(len(CONFIDENCE_FEATURES), 1)
            nn.init.zeros_(self.classifier.weight)
            nn.init.zeros_(self.classifier.bias)

    # ------------------------------------------------------------------ what the head knows about itself
    @property
    def architecture(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in ARCHITECTURE_KEYS}

    @property
    def scores_without_lag(self) -> bool:
        """True when the head scores a drafted token from the state that produced it (no one-step lag)."""
        return self.input_state == PRODUCING_STATE

    @property
    def draft_model_id(self) -> str | None:
        return self.training_info.get("draft_model_id")

    @property
    def target_model_id(self) -> str | None:
        return self.training_info.get("target_model_id")

    @property
    def decoding(self) -> dict[str, Any]:
        """The decoding the head was trained for (`do_sample`, `temperature`, ...); empty when unknown."""
        return dict(self.training_info.get("decoding") or (self.policy.decoding if self.policy else {}) or {})

    @property
    def trained_for_sampling(self) -> bool | None:
        """True/False when the head was trained for sampling/greedy decoding, None when unknown."""
        decoding = self.decoding
        return None if "do_sample" not in decoding else bool(decoding["do_sample"])

    def input_description(self) -> str:
        """One line for model cards: which state the head reads and whether it scores without lag."""
        if not self.scores_without_lag:
            return "the draft's hidden state at the drafted token (reference SpecDec++; scored one step later)"
        extra = " plus the draft distribution's confidence features" if self.use_confidence_features else ""
        return f"the draft's hidden state that produced the drafted token{extra} (scored as soon as it is drafted)"

    # ------------------------------------------------------------------ forward
    def logits(self, hidden_states: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Acceptance logits before the sigmoid.

        Args:
            hidden_states (`torch.Tensor` of shape `(..., hidden_size)`): draft hidden states.
            features (`torch.Tensor` of shape `(..., 3)`, *optional*): confidence features, required by heads with
                `use_confidence_features` (`confidence_features(scores, tokens)`).

        Returns:
            `torch.Tensor` of shape `(...)`: the logits.
        """
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
        """Predicted acceptance probabilities.

        Args:
            hidden_states (`torch.Tensor` of shape `(..., hidden_size)`): draft hidden states.
            features (`torch.Tensor` of shape `(..., 3)`, *optional*): confidence features (see `logits`).

        Returns:
            `torch.Tensor` of shape `(...)`: probabilities in (0, 1).
        """
        return torch.sigmoid(self.logits(hidden_states, features))

    def predict_drafted(self, hidden_states: torch.Tensor, scores: torch.Tensor,
                        tokens: torch.Tensor) -> torch.Tensor:
        """Acceptance probabilities of `tokens` drawn from `scores` at `hidden_states` (producing-state heads).

        Args:
            hidden_states (`torch.Tensor` of shape `(..., hidden_size)`): the states whose logits drew the tokens.
            scores (`torch.Tensor` of shape `(..., vocab_size)`): the processed draft scores.
            tokens (`torch.LongTensor` of shape `(...)`): the drawn tokens.

        Returns:
            `torch.Tensor` of shape `(...)`: float32 probabilities.
        """
        features = confidence_features(scores, tokens) if self.use_confidence_features else None
        return self(hidden_states.float(), features)

    def score_step(self, hidden_states: torch.Tensor, scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The head's prediction after one drafting step that read `hidden_states` and drew `tokens` from `scores`.

        A producing-state head predicts the acceptance of `tokens`; a drafted-token head that of the token AT
        `hidden_states`, i.e. the previously drafted one (the one-step lag).

        Args:
            hidden_states (`torch.Tensor` of shape `(batch_size, hidden_size)`): the draft's last hidden state.
            scores (`torch.Tensor` of shape `(batch_size, vocab_size)`): the processed draft scores of the step.
            tokens (`torch.LongTensor` of shape `(batch_size,)`): the tokens drawn in the step.

        Returns:
            `torch.Tensor` of shape `(batch_size,)`: float32 acceptance probabilities.
        """
        if self.scores_without_lag:
            return self.predict_drafted(hidden_states, scores, tokens)
        return self(hidden_states.float())

    def expected_acceptance(self, hidden_states: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """E over x ~ softmax(scores) of the predicted acceptance of x (producing-state heads): a prediction that
        does not depend on which token gets drawn, as exact tree sampling needs.

        Args:
            hidden_states (`torch.Tensor` of shape `(..., hidden_size)`): the producing states.
            scores (`torch.Tensor` of shape `(..., vocab_size)`): the processed draft scores.

        Returns:
            `torch.Tensor` of shape `(...)`: the expected acceptance probability.

        Raises:
            `ValueError`: for a drafted-token head.
        """
        if not self.scores_without_lag:
            raise ValueError("expected_acceptance needs a producing-state head")
        base = self.logits(hidden_states.float(), torch.zeros(*hidden_states.shape[:-1], len(CONFIDENCE_FEATURES),
                                                               device=hidden_states.device)
                           if self.feature_classifier is not None else None)
        log_q, log_q_max, entropy = distribution_features(scores)
        if self.feature_classifier is None:
            return torch.sigmoid(base)
        w = self.feature_classifier.weight[0].float()
        logit = base.unsqueeze(-1) + w[0] * log_q.clamp_min(-1e4) + (w[1] * log_q_max + w[2] * entropy).unsqueeze(-1)
        return (log_q.exp() * torch.sigmoid(logit)).sum(dim=-1)

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | Path, **kwargs) -> str | None:
        """`PyTorchModelHubMixin.save_pretrained`, refusing a folder that holds files this package did not write.

        Writes `config.json` (architecture), `model.safetensors`, and `policy.json`, `training_info.json`,
        `traces.safetensors` when the head has them. A `README.md` this package wrote is regenerated; one that
        was written or edited by hand is kept.

        Args:
            save_directory (`str` or `pathlib.Path`): the folder to write (created when missing).
            kwargs: `PyTorchModelHubMixin.save_pretrained`'s (`push_to_hub=`, `repo_id=`, `model_card_kwargs=`...).

        Returns:
            `str` or `None`: the commit URL when pushed, else None.
        """
        check_owned_folder(Path(save_directory))
        return super().save_pretrained(save_directory, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(save_directory / constants.SAFETENSORS_SINGLE_FILE), metadata={"format": "pt"})
        readable_by_others(save_directory / constants.SAFETENSORS_SINGLE_FILE)
        write_json(save_directory / constants.CONFIG_NAME,
                   {"model_type": HEAD_MODEL_TYPE, "format_version": FORMAT_VERSION, **self.architecture})
        _write_or_remove(save_directory / POLICY_FILE, self.policy.to_dict() if self.policy else None)
        _write_or_remove(save_directory / TRAINING_INFO_FILE, self.training_info or None)
        traces_path = save_directory / TRACES_FILE
        if self.traces:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.traces.items()}, str(traces_path))
            readable_by_others(traces_path)
        else:
            traces_path.unlink(missing_ok=True)
        card = save_directory / "README.md"
        if card.exists() and is_unedited_package_card(card):
            card.unlink()  # the mixin writes a fresh one

    def generate_model_card(self, *args, **kwargs):
        info = self.training_info or {}
        policy = self.policy
        extra = kwargs.pop("extra_sections", None)
        if extra is None:
            extra = "\n".join(training_section(info, self.input_description(), self.num_layers, self.hidden_size)
                              + policy_section(policy))
        policy_line = "not calibrated" if policy is None else (
            f"threshold h = {policy.threshold:g}, at most {policy.max_candidates or 'default'} candidates per round")
        card = super().generate_model_card(
            *args,
            draft_model_id=self.draft_model_id or "<draft model id>",
            target_model_id=self.target_model_id or "<target model id>",
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            input_description=self.input_description(),
            decoding=describe_decoding(self.decoding),
            policy_line=policy_line,
            measured_on=policy.measured_on.describe() if policy and policy.measured_on else "an unrecorded device",
            repo_id=kwargs.pop("repo_id", None) or "<this repo>",
            extra_sections=extra,
            **kwargs,
        )
        card.text = sign(card.text)
        from .discovery import is_repo_id

        if is_repo_id(self.draft_model_id) and is_repo_id(self.target_model_id):  # found by AcceptanceHead.for_pair
            card.data.base_model = [self.draft_model_id, self.target_model_id]
        return card

    @classmethod
    def for_pair(cls, draft_model_id: str, target_model_id: str, **kwargs) -> "AcceptanceHead":
        """The Hub's acceptance head for a draft/target pair, found by the `base_model` ids of its model card.

        Args:
            draft_model_id (`str`): the draft's Hub id.
            target_model_id (`str`): the target's Hub id.
            **kwargs: passed to `from_pretrained` (`revision`, `token`, ...).

        Returns:
            The first matching head (most downloaded first) whose own training record names the same pair.

        Raises:
            HeadNotFoundError: no head on the Hub names this pair.
        """
        from .discovery import HeadNotFoundError, WrongPairError, find_heads

        candidates = find_heads(draft_model_id, target_model_id)
        for repo_id in candidates:
            head = cls.from_pretrained(repo_id, **kwargs)
            try:
                head.check_pair(draft_model_id, target_model_id, where=repo_id)
            except WrongPairError:
                continue  # its card names the pair, its training record does not: not this pair's head
            return head
        raise HeadNotFoundError(
            f"No acceptance head for {draft_model_id} -> {target_model_id} on the Hub (searched the "
            f"'acceptance-head' models whose card names both as base_model; {len(candidates)} named them). Train "
            "one: hf-specdecpp make-data, train, calibrate, push; or use a training-free rule, e.g. "
            "EntropyMethod(estimator='svip', lam=0.3).")

    def check_pair(self, draft_model_id: str, target_model_id: str, where: str | None = None) -> None:
        """Raise `WrongPairError` when this head was trained for another pair of Hub ids (ids it or the caller
        does not know, such as local folders, are not compared).

        Args:
            draft_model_id (`str`): the draft the caller uses.
            target_model_id (`str`): the target the caller uses.
            where (`str`, *optional*): where the head came from, for the message.
        """
        from .discovery import check_pair

        check_pair((self.draft_model_id, self.target_model_id), (draft_model_id, target_model_id),
                   where or "given")

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict[str, Any] | None = None, **kwargs):
        """`PyTorchModelHubMixin.push_to_hub`, with `repo_id` filled into the model card's usage snippet.

        Args:
            repo_id (`str`): the Hub repo, namespace/name.
            model_card_kwargs (`dict`, *optional*): values for the model card template.
            kwargs: the mixin's (`private=`, `token=`, `commit_message=`, ...).

        Returns:
            the commit information of the upload.
        """
        model_card_kwargs = {"repo_id": repo_id, **(model_card_kwargs or {})}
        return super().push_to_hub(repo_id, model_card_kwargs=model_card_kwargs, **kwargs)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> "AcceptanceHead":
        """`PyTorchModelHubMixin.from_pretrained` (a local folder or a Hub repo id), loading strictly: see
        `_from_pretrained`.

        A path to a missing folder or to a file is refused before the Hub is asked, and a local `config.json`
        that is not a UTF-8 JSON object is reported with its name (the mixin would fail on it with a bare
        `AttributeError` or `UnicodeDecodeError`).

        Args:
            pretrained_model_name_or_path (`str` or `pathlib.Path`): a local head folder or a Hub repo id.
            kwargs: the mixin's (`revision=`, `token=`, `cache_dir=`, `local_files_only=`, `strict=`, ...).

        Returns:
            `AcceptanceHead`: the head with its `policy`, `training_info` and `traces` when the folder has them.
        """
        name = os.fspath(pretrained_model_name_or_path)
        folder = local_folder(name, "acceptance head")
        if folder is not None and os.path.isfile(os.path.join(folder, constants.CONFIG_NAME)):
            read_json_object(os.path.join(folder, constants.CONFIG_NAME), "head config")
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except LocalEntryNotFoundError as err:  # offline, or the Hub unreachable
            raise LocalEntryNotFoundError(f"{err} (there is no local folder named {name!r} either; "
                                          "HF_HUB_OFFLINE=1 skips the Hub's retries)") from None
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
            _raise_config_error(name, kwargs, err)
            raise

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
        config: dict | None = None,
        **model_kwargs,
    ) -> "AcceptanceHead":
        """Load strictly: the config is type-checked and the weights' shapes checked against it before any
        module is built; `model.safetensors`, or a reference-format `pytorch_model.bin`."""
        def resolve(filename: str) -> str | None:
            if os.path.isdir(model_id):
                path = os.path.join(model_id, filename)
                return path if os.path.isfile(path) else None
            try:
                return hf_hub_download(repo_id=model_id, filename=filename, revision=revision, cache_dir=cache_dir,
                                       force_download=force_download, token=token, local_files_only=local_files_only)
            except EntryNotFoundError:
                return None

        if config is None:
            # The mixin swallows Hub errors while fetching config.json: fetch it again so that a missing repo or
            # revision surfaces as huggingface_hub's own error instead of a misleading config error.
            path = resolve(constants.CONFIG_NAME)
            config = read_json_object(path, "head config") if path else None
        source = f"{model_id}/{constants.CONFIG_NAME}"
        if config is None and os.path.isdir(os.path.join(model_id, "checkpoint")):
            raise OSError(f"{model_id} holds an unfinished `train` run (its checkpoint folder) and no head yet: "
                          "finish it with `hf-specdecpp train ... --resume`.")
        if not isinstance(config, dict) or "hidden_size" not in config:
            raise OSError(f"No usable config.json for an acceptance head in {model_id!r}: it must record "
                          "`hidden_size` (and `num_layers`).")
        if not is_head_config(config):
            raise FileFormatError(f"{source} is not an acceptance-head config (model_type {config.get('model_type')!r})")
        architecture = validate_architecture({**config, **{k: v for k, v in model_kwargs.items()
                                                          if k in ARCHITECTURE_KEYS}}, source)
        state_dict = _read_weights(resolve, model_id, architecture, strict)
        head = cls(**architecture)
        head.load_state_dict(state_dict, strict=strict)
        legacy_policy, legacy_info = split_legacy_config(config)
        policy_path = resolve(POLICY_FILE)
        if policy_path is not None:
            head.policy = HeadPolicy.load(policy_path)
        elif legacy_policy is not None:
            head.policy = HeadPolicy.from_dict(legacy_policy, source=source)
        info_path = resolve(TRAINING_INFO_FILE)
        head.training_info = read_json_object(info_path, "head training info") if info_path else legacy_info
        traces_path = resolve(TRACES_FILE)
        head.traces = read_traces(traces_path) if traces_path else None
        head.to(map_location)
        head.eval()
        return head


def _read_weights(resolve, model_id: str, architecture: dict, strict: bool) -> dict[str, torch.Tensor]:
    """The checked state dict: safetensors shapes are compared with the config from the file header alone."""
    expected = expected_shapes(architecture)
    path = resolve(constants.SAFETENSORS_SINGLE_FILE)
    if path is not None:
        check_shapes(safetensors_shapes(path), expected, path, strict)
        try:
            return load_file(path, device="cpu")
        except Exception as err:  # safetensors raises several types for corrupt payloads
            raise OSError(f"Could not read acceptance-head weights {path}: {err}") from None
    path = resolve(constants.PYTORCH_WEIGHTS_NAME)
    if path is None:
        raise OSError(f"No acceptance-head weights in {model_id!r}: expected {constants.SAFETENSORS_SINGLE_FILE} "
                      f"or {constants.PYTORCH_WEIGHTS_NAME} (reference format).")
    if os.path.getsize(path) > 64 * sum(_numel(s) for s in expected.values()) + (1 << 20):
        raise FileFormatError(f"{path} is far larger than a head with this config needs")
    state = load_reference_state_dict(path, architecture["num_layers"])
    check_shapes({k: tuple(v.shape) for k, v in state.items()}, expected, path, strict)
    return state


def _raise_config_error(repo_id: str, kwargs: dict, err: Exception) -> None:
    """Name the downloaded config.json of a Hub repo and its problem when reading it failed inside the mixin;
    return when the config itself is fine (so `err` came from elsewhere)."""
    try:
        path = hf_hub_download(repo_id=repo_id, filename=constants.CONFIG_NAME, revision=kwargs.get("revision"),
                               cache_dir=kwargs.get("cache_dir"), local_files_only=True)
    except Exception:  # not in the cache: nothing more to say than the original error
        return
    read_json_object(path, f"head config of {repo_id!r}")


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _write_or_remove(path: Path, data: dict | None) -> None:
    if data is None:
        path.unlink(missing_ok=True)
    else:
        write_json(path, data)


def check_owned_folder(folder: Path) -> None:
    """Refuse to write a head into a folder whose files were not written by this package.

    A folder qualifies when it does not exist, holds none of the files a head save writes, or holds a head
    config (current or legacy format). Anything else (another model's `config.json`, stray weights) is refused
    with the name of the file in the way.
    """
    if not folder.exists():
        return
    if not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder")
    config = folder / constants.CONFIG_NAME
    present = [name for name in OWNED_FILES if (folder / name).exists()]
    if not present:
        return
    if config.exists():
        try:
            ours = is_head_config(read_json_object(config, "config"))
        except (FileFormatError, FileNotFoundError):
            ours = False
        if ours:
            return
        raise FileExistsError(f"{config} is not an acceptance-head config: refusing to overwrite it. Save the head "
                              "into a new or empty folder.")
    raise FileExistsError(f"{folder / present[0]} exists in a folder without a head config: refusing to overwrite it. "
                          "Save the head into a new or empty folder.")


_DEVICE_COPIES: "weakref.WeakKeyDictionary[AcceptanceHead, dict]" = weakref.WeakKeyDictionary()
_DEVICE_COPIES_LOCK = threading.Lock()


def head_on(head: AcceptanceHead, device: torch.device) -> AcceptanceHead:
    """The head in float32 on `device`, without changing the caller's object.

    The head itself is returned when it already is float32 on `device` (it has no dropout or normalisation, so
    train and eval mode compute the same); otherwise a copy, cached per device until the head's parameters change.

    Args:
        head (`AcceptanceHead`): the head.
        device (`torch.device`): where the draft's hidden states are.

    Returns:
        `AcceptanceHead`: `head` or its float32 copy on `device`.
    """
    params = list(head.parameters())
    if all(p.device == device and p.dtype == torch.float32 for p in params):
        return head
    version = tuple(p._version for p in params) + tuple(p.data_ptr() for p in params)
    key = (str(device), version)
    with _DEVICE_COPIES_LOCK:
        copies = _DEVICE_COPIES.setdefault(head, {})
        if key not in copies:
            copies.clear()  # older versions of the weights
            copy_ = copy.deepcopy(head).to(device=device, dtype=torch.float32).eval()
            copy_.requires_grad_(False)
            copies[key] = copy_
        return copies[key]


__all__ = ["AcceptanceHead", "CONFIDENCE_FEATURES", "DRAFTED_TOKEN", "INPUT_STATES", "PRODUCING_STATE",
           "check_owned_folder", "head_on"]
