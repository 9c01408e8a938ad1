"""Reading head folders safely: config validation and migration, weight shapes checked before building anything.

A head folder holds `config.json` (the architecture), `model.safetensors` (or the reference implementation's
pickled `pytorch_model.bin`), and optionally `policy.json`, `training_info.json` and `traces.safetensors`.
Folders written before the policy moved out of `config.json` (format 1) still load: their metadata is split into
policy and training info here.
"""

from __future__ import annotations

from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ..utils.io import FileFormatError
from .features import CONFIDENCE_FEATURES, INPUT_STATES, PRODUCING_STATE

HEAD_MODEL_TYPE = "specdecpp-acceptance-head"
FORMAT_VERSION = 2
ARCHITECTURE_KEYS = ("hidden_size", "num_layers", "input_state", "use_confidence_features")
LEGACY_POLICY_KEYS = ("recommended_threshold", "recommended_max_candidates", "cost_ratio")
LEGACY_INFO_KEYS = ("draft_model_id", "target_model_id", "temperature", "training_info")
MAX_HIDDEN_SIZE = 1 << 16


def is_head_config(config: dict) -> bool:
    """True for a config.json written by this package (current or legacy format)."""
    if config.get("model_type") == HEAD_MODEL_TYPE:
        return True
    # format 1 and the reference format wrote no model_type; transformers' configs always have one
    return "model_type" not in config and "hidden_size" in config and "architectures" not in config


def validate_architecture(config: dict, source: str) -> dict[str, Any]:
    """The architecture arguments of a head config, type-checked; errors name `source` and the field."""
    def fail(message: str) -> FileFormatError:
        return FileFormatError(f"{source}: {message}")

    hidden, layers = config.get("hidden_size"), config.get("num_layers", 3)
    if isinstance(hidden, bool) or not isinstance(hidden, int) or not 1 <= hidden <= MAX_HIDDEN_SIZE:
        raise fail(f"`hidden_size` must be an integer in [1, {MAX_HIDDEN_SIZE}], got {hidden!r}")
    if isinstance(layers, bool) or not isinstance(layers, int) or not 0 <= layers <= 64:
        raise fail(f"`num_layers` must be an integer in [0, 64], got {layers!r}")
    input_state = config.get("input_state", INPUT_STATES[0])
    if input_state not in INPUT_STATES:
        raise fail(f"`input_state` must be one of {INPUT_STATES}, got {input_state!r}")
    features = config.get("use_confidence_features", False)
    if not isinstance(features, bool):
        raise fail(f"`use_confidence_features` must be true or false, got {features!r}")
    if features and input_state != PRODUCING_STATE:
        raise fail(f"`use_confidence_features` needs input_state {PRODUCING_STATE!r}")
    return {"hidden_size": hidden, "num_layers": layers, "input_state": input_state,
            "use_confidence_features": features}


def expected_shapes(architecture: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of a head with this architecture, computed without building it."""
    h = architecture["hidden_size"]
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(architecture["num_layers"]):
        shapes[f"blocks.{i}.linear.weight"] = (h, h)
        shapes[f"blocks.{i}.linear.bias"] = (h,)
    shapes["classifier.weight"] = (1, h)
    shapes["classifier.bias"] = (1,)
    if architecture["use_confidence_features"]:
        shapes["feature_classifier.weight"] = (1, len(CONFIDENCE_FEATURES))
        shapes["feature_classifier.bias"] = (1,)
    return shapes


def safetensors_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Tensor shapes recorded in a safetensors file's header (no tensor is read)."""
    try:
        with safe_open(path, framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise OSError(f"Could not read acceptance-head weights {path}: {err}") from None


def read_traces(path: str) -> dict[str, torch.Tensor]:
    """The dev traces a head ships (`traces.safetensors`); a damaged file is reported with its path."""
    try:
        return load_file(path, device="cpu")
    except Exception as err:  # safetensors raises several types for corrupt headers and payloads
        raise FileFormatError(f"Could not read the head's dev traces {path}: {err}") from None


def check_shapes(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], source: str,
                 strict: bool = True) -> None:
    """Raise a FileFormatError naming `source` and every offending key when weights do not fit the config."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(f"{k}: file {found[k]} vs config {expected[k]}"
                        for k in set(found) & set(expected) if tuple(found[k]) != tuple(expected[k]))
    problems = []
    if strict and missing:
        problems.append(f"missing keys {missing}")
    if strict and unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches {mismatched}")
    if problems:
        raise FileFormatError(f"Acceptance-head weights in {source} do not fit the head's config: "
                              + "; ".join(problems))


def load_reference_state_dict(path: str, num_layers: int) -> dict[str, torch.Tensor]:
    """A reference SpecDec++ `pytorch_model.bin` (loaded without unpickling code) mapped to our keys."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or malicious pickles
        raise OSError(f"Could not read acceptance-head weights {path}: {err}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FileFormatError(f"{path} does not hold a state dict of tensors")
    return convert_reference_state_dict(state, num_layers)


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


def split_legacy_config(config: dict) -> tuple[dict | None, dict]:
    """(policy dict or None, training info) recovered from a format-1 config.json's metadata fields."""
    info = dict(config.get("training_info") or {})
    for key in ("draft_model_id", "target_model_id"):
        if config.get(key) is not None:
            info.setdefault(key, config[key])
    temperature = config.get("temperature")
    decoding = dict(info.get("decoding") or {})
    if temperature is not None and "do_sample" not in decoding:
        decoding = {"do_sample": bool(temperature), "temperature": float(temperature)}
    if decoding:
        info["decoding"] = decoding
    threshold = config.get("recommended_threshold")
    if threshold is None:
        return None, info
    calibration = info.get("calibration") or {}
    cost = calibration.get("cost") or {}
    verify = calibration.get("verify_costs")
    policy = {
        "threshold": float(threshold),
        "max_candidates": config.get("recommended_max_candidates"),
        "cost_ratio": config.get("cost_ratio"),
        "verify_costs": verify,
        # format-1 heads did not record the device kind: only the device type is known
        "measured_on": {"device_type": cost.get("device", "cpu"), "device_name": "unrecorded (format-1 head)",
                        "dtype": "unrecorded", "linear": "unrecorded"} if cost else None,
        "decoding": decoding,
        "simulation": {k: calibration[k] for k in ("time_per_token", "speedup", "best_fixed_k", "fixed_k_speedup",
                                                   "oracle_speedup", "dev_responses") if k in calibration},
    }
    return policy, info
