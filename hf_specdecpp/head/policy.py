"""The calibrated stopping policy of a head, and the kind of device it was measured on.

A policy (threshold h, cap on candidates per round, the draft/target cost ratio and verification costs) is a
property of a head ON A MACHINE: the costs it was chosen for differ between a CPU in float32, a CPU in bf16 and
a GPU. It is saved next to the head's weights in `policy.json`, apart from the architecture in `config.json`,
as transformers keeps `generation_config.json` apart from `config.json`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.device import DeviceKind
from ..utils.io import FileFormatError, read_json_object, write_json

POLICY_FILE = "policy.json"
PLAUSIBLE_THRESHOLDS = (0.01, 0.99)
"""The thresholds calibration can choose (its 0.05 grid refined by 0.01 steps)."""
PLAUSIBLE_MAX_CANDIDATES = 64
"""The largest cap calibration considers (`hf_specdecpp.training.calibrate.MAX_CANDIDATES_LIMIT`)."""


@dataclass(frozen=True)
class HeadPolicy:
    """A calibrated SpecDec++ policy: stop drafting once the predicted P(any rejection) exceeds `threshold`,
    after at most `max_candidates` candidates per round.

    `cost_ratio` (draft step / target step) and `verify_costs` (v(K): a target pass verifying K candidates, in
    target steps, K = 0, 1, ...) are the costs it was chosen for, measured on `measured_on`; `decoding` is the
    decoding it was simulated for (`do_sample`, `temperature`, ...); `simulation` summarises the choice
    (simulated speedups of the policy, the best fixed K and the oracle).

    Args:
        threshold (`float`): h in (0, 1).
        max_candidates (`int`, *optional*): the cap on candidates per round (None: the default cap).
        cost_ratio (`float`, *optional*): c, a draft step in target steps.
        verify_costs (`tuple[float, ...]`, *optional*): v(0), v(1), ... in target steps.
        measured_on (`DeviceKind`, *optional*): where the costs were measured (None: given, valid anywhere).
        decoding (`dict[str, Any]`): the decoding simulated (`do_sample`, `temperature`, `top_k`, `top_p`).
        simulation (`dict[str, Any]`): `speedup`, `time_per_token`, `best_fixed_k`, `fixed_k_speedup`,
            `oracle_speedup`, `dev_responses` of the simulation that chose the policy.
    """

    threshold: float
    max_candidates: int | None = None
    cost_ratio: float | None = None
    verify_costs: tuple[float, ...] | None = None
    measured_on: DeviceKind | None = None
    decoding: dict[str, Any] = field(default_factory=dict)
    simulation: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"policy threshold must lie strictly between 0 and 1, got {self.threshold!r}")
        if self.max_candidates is not None and (isinstance(self.max_candidates, bool)
                                                or not isinstance(self.max_candidates, int) or self.max_candidates < 1):
            raise ValueError(f"policy max_candidates must be an integer >= 1, got {self.max_candidates!r}")
        if self.cost_ratio is not None and (isinstance(self.cost_ratio, bool)
                                            or not isinstance(self.cost_ratio, (int, float)) or not self.cost_ratio > 0):
            raise ValueError(f"policy cost_ratio must be a number > 0, got {self.cost_ratio!r}")

    def implausible(self) -> list[str]:
        """What in this policy no calibration could have chosen (a damaged or hand-edited file).

        The constructor accepts any threshold in (0, 1) and any cap, as a user may set them on purpose; a policy
        read from a cache or re-measured is checked here before it is used.

        Returns:
            One line per implausible value (empty when the policy is plausible).
        """
        problems = []
        low, high = PLAUSIBLE_THRESHOLDS
        if not low <= self.threshold <= high:
            problems.append(f"threshold {self.threshold!r} outside [{low}, {high}]")
        if self.max_candidates is not None and self.max_candidates > PLAUSIBLE_MAX_CANDIDATES:
            problems.append(f"max_candidates {self.max_candidates!r} above {PLAUSIBLE_MAX_CANDIDATES}")
        if self.cost_ratio is not None and not math.isfinite(self.cost_ratio):
            problems.append(f"cost_ratio {self.cost_ratio!r}")
        bad = [v for v in self.verify_costs or () if not (math.isfinite(v) and v > 0)]
        if bad:
            problems.append(f"verify_costs {bad[:3]!r} (NaN, infinite or not positive)")
        return problems

    @property
    def greedy(self) -> bool | None:
        """Whether the policy was calibrated for greedy decoding (None when unknown)."""
        return None if "do_sample" not in self.decoding else not self.decoding["do_sample"]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["verify_costs"] = list(self.verify_costs) if self.verify_costs is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "policy") -> "HeadPolicy":
        """Build from `to_dict()` output; wrong keys or types raise a ValueError naming `source`.

        Args:
            data (`dict[str, Any]`): `to_dict()`'s output (the contents of `policy.json`).
            source (`str`, *optional*): where `data` came from, for error messages.

        Returns:
            `HeadPolicy`.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FileFormatError(f"{source}: unknown policy fields {unknown}")
        values = dict(data)
        try:
            if values.get("measured_on") is not None:
                values["measured_on"] = DeviceKind(**values["measured_on"])
            if values.get("verify_costs") is not None:
                values["verify_costs"] = tuple(float(v) for v in values["verify_costs"])
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise FileFormatError(f"{source}: {err}") from None

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `policy.json` into `folder`.

        Args:
            folder (`str` or `os.PathLike`): an existing folder (a head folder).

        Returns:
            `pathlib.Path`: the file written.
        """
        path = Path(folder) / POLICY_FILE
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HeadPolicy":
        """Read a `policy.json` file.

        Args:
            path (`str` or `os.PathLike`): the file.

        Returns:
            `HeadPolicy`; a missing, corrupt or mistyped file raises an error naming it.
        """
        return cls.from_dict(read_json_object(path, "head policy"), source=str(path))
