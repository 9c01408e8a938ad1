"""Calibrating SpecDec++'s policy: simulate drafting rounds on dev-set traces and pick the threshold and cap.

The simulation walks every dev response (the head's predictions and the acceptance labels at every position).
A round starting at position j drafts K tokens, K given by the policy: the SpecDec++ stopping rule (exactly
`RejectionThresholdCriteria`: with the one-step lag of drafted-token heads token 1 is never scored and after
drafting token t the product covers tokens 1..t-1; producing-state heads cover tokens 1..t; stop when
`1 - prod > h`, K within [min, max]) or a fixed K. The accepted count n is the number of leading accepted
positions (greedy: hard labels; sampling: Bernoulli(label) draws with a fixed seed, the same draws for every
policy); the round yields n + 1 tokens and costs `K * c + v(K)`; the next round starts at j + n + 1. Policies
are compared by cost per generated token (target alone = 1). The threshold and the cap on candidates per
round are chosen together: a cap matters where `v` steps up.

A head can carry its dev traces (`head.traces`): then `policy_for_device` re-calibrates it for the machine at
hand in seconds (timing the two models, no data generation), cached per device kind in memory and on disk.
A re-calibration is checked before it is used or cached (`recalibrate`): timings on a busy machine can make a
cost curve that no machine has (v(K) falling as K grows) or a policy predicted to be slower than the target
alone; such a measurement is repeated once and then refused, and the head's shipped policy is used instead.
A cache is an optimisation: an unwritable cache folder costs a warning, never the call.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.costs import VERIFY_KS, CostCurve, measure_costs, verify_cost_table
from ...core.device import DeviceKind
from ...head import AcceptanceHead, HeadPolicy
from ...utils.io import FileFormatError, read_json_object, write_json
from ...utils.warnings import warn_once

DEFAULT_THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.05, 0.951, 0.05))
TRACE_KEYS = ("pred", "label", "offsets")


def threshold_round_length(pred: np.ndarray, start: int, limit: int, threshold: float, min_candidates: int,
                           lagged: bool = True) -> int:
    """K for a round starting at `start` under the SpecDec++ rule, at most `limit` (max candidates / data end).

    `lagged`: the head's score of token t is available only after drafting token t+1 (drafted-token heads);
    otherwise right after drafting token t (producing-state heads).
    """
    cum = 1.0
    t = 1
    while True:
        if not lagged:
            cum *= float(pred[start + t - 1])
        if t >= limit:
            return limit
        if t >= min_candidates and 1.0 - cum > threshold:
            return t
        if lagged:
            cum *= float(pred[start + t - 1])
        t += 1


def _accept_runs(accepted: np.ndarray) -> np.ndarray:
    """run[j] = number of consecutive accepted positions starting at j."""
    run = np.zeros(len(accepted) + 1, dtype=np.int64)
    for j in range(len(accepted) - 1, -1, -1):
        run[j] = run[j + 1] + 1 if accepted[j] else 0
    return run[:-1]


def simulate_policy(preds: list[np.ndarray], outcomes: list[list[np.ndarray]], *, c_draft: float,
                    verify_slope: float = 0.0, verify_costs: np.ndarray | None = None, threshold: float | None = None,
                    fixed_k: int | None = None, oracle: bool = False, min_candidates: int = 1,
                    max_candidates: int = 20, lagged: bool = True) -> dict[str, float]:
    """Simulated cost per generated token of one policy (threshold, fixed K, or the oracle) over all responses
    and draws.

    The oracle knows the outcomes: every round drafts exactly the accepted run (at most `max_candidates`), the
    bound no stopping rule that sees only the draft can pass. `outcomes[d][r]` is the boolean acceptance of every
    position of response r in draw d. `verify_costs[K]` is v(K) (see `verify_cost_table`); without it
    v(K) = 1 + verify_slope * K.
    """
    if (threshold is not None) + (fixed_k is not None) + bool(oracle) != 1:
        raise ValueError("give exactly one of threshold, fixed_k and oracle")
    top = max(max_candidates, fixed_k or 0)
    if verify_costs is None:
        verify_costs = verify_cost_table(top, verify_slope=verify_slope)

    def round_length(r: int, j: int, n: int, run: np.ndarray) -> int:
        limit = min(max_candidates, n - j)
        if fixed_k is not None:
            return min(fixed_k, n - j)
        if oracle:
            return min(int(run[j]), limit)
        return threshold_round_length(preds[r], j, limit, threshold, min_candidates, lagged)

    return simulate_rounds(outcomes, round_length, c_draft=c_draft, verify_costs=verify_costs, max_k=top)


def simulate_rounds(outcomes: list[list[np.ndarray]], round_length, *, c_draft: float, verify_costs: np.ndarray,
                    max_k: int) -> dict[str, float]:
    """Walk every response of every draw in rounds: `round_length(response index, start, response length,
    accepted-run lengths)` gives K; the round accepts the leading accepted positions (at most K), yields them
    plus the target's token and costs `K * c_draft + v(K)` target steps. Returns the cost per token, the speed-up
    over the target alone, tokens per round and mean K."""
    if len(verify_costs) <= max_k:
        raise ValueError(f"verify_costs covers K <= {len(verify_costs) - 1}, the policy drafts up to {max_k}")
    total_cost = total_tokens = rounds = drafted = 0.0
    for draw in outcomes:
        for r, accepted in enumerate(draw):
            run = _accept_runs(accepted)
            n = len(accepted)
            j = 0
            while j < n:
                k = round_length(r, j, n, run)
                n_acc = min(int(run[j]), k)
                total_tokens += min(n_acc + 1, n - j)
                total_cost += k * c_draft + float(verify_costs[k])
                rounds += 1
                drafted += k
                j += n_acc + 1
    return {
        "time_per_token": total_cost / max(total_tokens, 1),
        "speedup": total_tokens / max(total_cost, 1e-12),
        "tokens_per_round": total_tokens / max(rounds, 1),
        "mean_candidates": drafted / max(rounds, 1),
    }


def acceptance_outcomes(labels: list[np.ndarray], greedy: bool, num_draws: int = 8, seed: int = 0) -> list[list[np.ndarray]]:
    """Greedy: hard labels (one 'draw'). Sampling: `num_draws` Bernoulli(label) draws with a fixed seed."""
    if greedy:
        return [[np.asarray(l) >= 0.5 for l in labels]]
    rng = np.random.default_rng(seed)
    return [[rng.random(len(l)) < np.asarray(l) for l in labels] for _ in range(num_draws)]


def choose_threshold(preds, outcomes, *, c_draft: float, verify_slope: float = 0.0,
                     verify_costs: np.ndarray | None = None, thresholds=DEFAULT_THRESHOLDS, refine: bool = True,
                     min_candidates: int = 1, max_candidates: int = 20, search_cap: bool = True,
                     cap_tolerance: float = 0.0, lagged: bool = True, on_policy=None) -> dict[str, Any]:
    """Grid-search h (then a 0.01 grid around the best) and, with `search_cap`, the cap on candidates per round
    (min_candidates..max_candidates); also the best fixed K and the oracle (`simulate_policy(oracle=True)`) for
    comparison.

    The cap is the LARGEST one whose best simulated time per token is within `cap_tolerance` (relative) of the
    best cap's. The default 0 takes the best simulated cap: a 1% tolerance, meant to keep the long accepted runs
    of code, chose caps 12 and 16 for the real pair, and both ran slower than the simulation's best cap in the
    interleaved benchmark, on code prompts too (see the README).
    """
    if verify_costs is None:
        verify_costs = verify_cost_table(max_candidates, verify_slope=verify_slope)
    caps = list(range(min_candidates, max_candidates + 1)) if search_cap else [max_candidates]

    def run(h: float, cap: int) -> dict:
        return simulate_policy(preds, outcomes, c_draft=c_draft, verify_costs=verify_costs, threshold=h,
                               min_candidates=min_candidates, max_candidates=cap, lagged=lagged)

    grids: dict[int, dict[float, dict]] = {}
    for cap in caps:
        grids[cap] = {}
        for h in thresholds:
            grids[cap][float(h)] = run(float(h), cap)
            if on_policy is not None:
                on_policy()
    cap_best = {cap: min(r["time_per_token"] for r in grids[cap].values()) for cap in caps}
    fastest = min(cap_best.values())
    best_cap = max(c for c in caps if cap_best[c] <= fastest * (1.0 + cap_tolerance))
    grid = grids[best_cap]
    if refine:
        best = min(grid, key=lambda h: grid[h]["time_per_token"])
        for h in np.arange(best - 0.04, best + 0.0401, 0.01):
            h = round(float(h), 2)
            if 0.0 < h < 1.0 and h not in grid:
                grid[h] = run(h, best_cap)
    fixed, oracle = _baselines(preds, outcomes, c_draft, verify_costs, min_candidates, max_candidates, on_policy)
    best_h = min(sorted(grid), key=lambda h: grid[h]["time_per_token"])
    best_k = min(sorted(fixed), key=lambda k: fixed[k]["time_per_token"])
    return {
        "threshold": best_h,
        "max_candidates": best_cap,
        "time_per_token": grid[best_h]["time_per_token"],
        "speedup": grid[best_h]["speedup"],
        "tokens_per_round": grid[best_h]["tokens_per_round"],
        "mean_candidates": grid[best_h]["mean_candidates"],
        "best_fixed_k": best_k,
        "fixed_k_time_per_token": fixed[best_k]["time_per_token"],
        "fixed_k_speedup": fixed[best_k]["speedup"],
        "oracle_speedup": oracle["speedup"],
        "grid": {f"{h:.2f}": grid[h]["time_per_token"] for h in sorted(grid)},
        "cap_grid": {str(c): t for c, t in cap_best.items()},
        "cap_tolerance": cap_tolerance,
        "fixed_k": {str(k): fixed[k]["time_per_token"] for k in sorted(fixed)},
        "verify_costs": [float(v) for v in verify_costs],
    }


def _baselines(preds, outcomes, c_draft, verify_costs, min_candidates, max_candidates, on_policy):
    """Every fixed K up to the cap, and the oracle, simulated on the same traces (what the threshold is compared
    against)."""
    fixed = {}
    for k in range(1, max_candidates + 1):
        fixed[k] = simulate_policy(preds, outcomes, fixed_k=k, c_draft=c_draft, verify_costs=verify_costs,
                                   min_candidates=min_candidates, max_candidates=max_candidates)
        if on_policy is not None:
            on_policy()
    oracle = simulate_policy(preds, outcomes, oracle=True, c_draft=c_draft, verify_costs=verify_costs,
                             max_candidates=max_candidates)
    return fixed, oracle


# ---------------------------------------------------------------------------------------------- traces
def pack_traces(preds: list[np.ndarray], labels: list[np.ndarray], greedy: bool,
                features: list[np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """Dev traces to ship with a head: per-position predictions and labels of every response, concatenated
    (`offsets` marks where each response starts), and optionally the draft's confidence features `(N, 3)`."""
    lengths = [len(p) for p in preds]
    traces = {"pred": torch.tensor(np.concatenate(preds), dtype=torch.float32),
              "label": torch.tensor(np.concatenate(labels), dtype=torch.float32),
              "offsets": torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int64),
              "greedy": torch.tensor([1 if greedy else 0], dtype=torch.int64)}
    if features is not None:
        traces["features"] = torch.tensor(np.concatenate(features), dtype=torch.float32)
    return traces


def unpack_traces(traces: dict[str, torch.Tensor]) -> tuple[list[np.ndarray], list[np.ndarray], bool]:
    """(predictions per response, labels per response, greedy) from `pack_traces` output."""
    missing = [k for k in TRACE_KEYS if k not in traces]
    if missing:
        raise FileFormatError(f"head traces lack {missing}")
    offsets = traces["offsets"].tolist()
    pred, label = traces["pred"].double().numpy(), traces["label"].double().numpy()
    if len(pred) != offsets[-1] or len(label) != offsets[-1]:
        raise FileFormatError("head traces: predictions, labels and offsets do not match")
    spans = list(zip(offsets[:-1], offsets[1:]))
    greedy = bool(traces["greedy"][0]) if "greedy" in traces else True
    return [pred[a:b] for a, b in spans], [label[a:b] for a, b in spans], greedy


def check_traces(head: AcceptanceHead) -> None:
    """Re-calibration re-simulates the head's dev traces: a head without them is refused before any timing."""
    if not head.traces:
        raise ValueError("This head ships no dev traces (head.traces): re-calibrate it with `hf-specdecpp calibrate` "
                         "and its make-data folder instead.")


def policy_from_costs(head: AcceptanceHead, costs: CostCurve, max_candidates: int = 20, min_candidates: int = 1,
                      num_draws: int = 8, seed: int = 0, on_policy=None) -> HeadPolicy:
    """Re-simulate the head's shipped traces under `costs` and return the best policy for that machine
    (`on_policy` is called after every simulated policy: progress)."""
    check_traces(head)
    preds, labels, greedy = unpack_traces(head.traces)
    outcomes = acceptance_outcomes(labels, greedy, num_draws=num_draws, seed=seed)
    result = choose_threshold(preds, outcomes, c_draft=costs.c_draft, verify_costs=costs.table(max_candidates),
                              min_candidates=min_candidates, max_candidates=max_candidates,
                              lagged=not head.scores_without_lag, on_policy=on_policy)
    decoding = head.policy.decoding if head.policy is not None else head.decoding
    return HeadPolicy(threshold=float(result["threshold"]), max_candidates=int(result["max_candidates"]),
                      cost_ratio=costs.c_draft, verify_costs=tuple(float(v) for v in result["verify_costs"]),
                      measured_on=DeviceKind(**costs.device) if costs.device else None, decoding=dict(decoding),
                      simulation={k: result[k] for k in ("time_per_token", "speedup", "best_fixed_k",
                                                         "fixed_k_speedup", "oracle_speedup")}
                      | {"dev_responses": len(preds)})


MAX_VERIFY_DROP = 0.15
"""How far (relative) v(K) may fall below a smaller K's v before a cost curve counts as noise.

Verifying more candidates never takes less work: a measured v that falls as K grows (v(6) 2.69, v(12) 1.20,
v(20) 1.15 on a busy 2-core machine) is load that came and went during the timing, not the machine's costs."""


def curve_problems(costs: CostCurve) -> list[str]:
    """Why a measured cost curve cannot describe this machine (empty when it can).

    Args:
        costs: The measured curve.

    Returns:
        One line per problem: a timing that is not a positive finite number, or v(K) falling more than
        `MAX_VERIFY_DROP` below the largest v at a smaller K (v(0) = 1: one target step).
    """
    times = {"draft step": costs.draft_step_s, "target step": costs.target_step_s,
             **{f"verify K={k}": t for k, t in costs.verify_s.items()}}
    bad = [f"{name} {t!r} s" for name, t in times.items() if not (math.isfinite(t) and t > 0)]
    if bad:
        return [f"timings that are not positive numbers: {', '.join(bad)}"]
    problems = []
    peak_k, peak = 0, 1.0
    for k, v in sorted(costs.verify_cost.items()):
        if v < peak * (1.0 - MAX_VERIFY_DROP):
            problems.append(f"v({k}) = {v:.2f} below v({peak_k}) = {peak:.2f}")
        if v > peak:
            peak_k, peak = k, v
    if problems:
        return [f"verification costs that fall as K grows ({'; '.join(problems)}): the machine was busy"]
    return []


@dataclass
class Recalibration:
    """The outcome of `recalibrate`: the policy (None when refused), the last curve measured, why it was refused,
    how many measurements it took and how long."""

    policy: HeadPolicy | None
    costs: CostCurve
    problems: list[str] = field(default_factory=list)
    attempts: int = 1
    seconds: float = 0.0

    def describe(self) -> str:
        """One line for the user: the chosen policy or why none was, and the time taken."""
        took = f"in {self.seconds:.0f} s ({self.attempts} measurement{'s' if self.attempts > 1 else ''})"
        if self.policy is None:
            return f"re-calibration refused {took}: {'; '.join(self.problems)}"
        p = self.policy
        return (f"re-calibrated {took}: threshold {p.threshold:g}, max_candidates {p.max_candidates}, cost_ratio "
                f"{p.cost_ratio:.2f}, predicted speed-up {p.simulation['speedup']:.2f}x over the target alone")


class _Progress:
    """A tqdm bar on stderr, or one plain line when tqdm is not installed."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            _say(f"hf-specdecpp: {desc} ({total} steps) ...")
            return
        self.bar = tqdm(total=total, desc=f"hf-specdecpp: {desc}", leave=False, dynamic_ncols=True, file=sys.stderr)

    def update(self, *_) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def recalibrate(head: AcceptanceHead, draft: torch.nn.Module, target: torch.nn.Module, *, max_candidates: int = 20,
                repeats: int = 3, attempts: int = 2, progress: bool = True) -> Recalibration:
    """Time the pair here and re-simulate the head's dev traces; never return a policy that cannot be right.

    A curve with `curve_problems`, a policy with `HeadPolicy.implausible` values, or a policy predicted to be
    slower than the target alone (simulated speed-up < 1) is measured again, up to `attempts` times in all; if
    every measurement fails, the result holds no policy and says why.

    Args:
        head: An acceptance head with dev traces (`head.traces`).
        draft: The draft model, on the device and in the dtype it will run.
        target: The target model, likewise.
        max_candidates: The largest cap on candidates per round to consider.
        repeats: Timed repetitions per forward pass.
        attempts: Measurements before giving up.
        progress: Show a progress bar (tqdm, else one line) and the time taken on stderr.

    Returns:
        A `Recalibration`: the policy or None, the last curve, the problems found, attempts and seconds.
    """
    check_traces(head)
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    ks = tuple(k for k in VERIFY_KS if k <= max_candidates)
    simulations = max_candidates * (len(DEFAULT_THRESHOLDS) + 1)  # caps x thresholds, then fixed K
    start = time.perf_counter()
    problems: list[str] = []
    for attempt in range(1, attempts + 1):
        bar = _Progress(repeats + 1 + simulations, f"re-calibrating for {DeviceKind.of(draft).describe()}"
                        f"{f' (measurement {attempt})' if attempt > 1 else ''}", progress)
        try:
            costs = measure_costs(draft, target, ks=ks, repeats=repeats, warmup=1, on_repeat=bar.update)
            problems = curve_problems(costs)
            policy = None
            if not problems:
                policy = policy_from_costs(head, costs, max_candidates=max_candidates, on_policy=bar.update)
                problems = policy.implausible()
                speedup = policy.simulation["speedup"]
                if speedup < 1.0:
                    problems.append(f"the best policy (cost_ratio {policy.cost_ratio:.2f}, max_candidates "
                                    f"{policy.max_candidates}, threshold {policy.threshold:g}) is predicted to run at "
                                    f"{speedup:.3f}x the target alone's speed on the head's "
                                    f"{policy.simulation['dev_responses']} dev responses")
        finally:
            bar.close()
        if not problems:
            break
    result = Recalibration(None if problems else policy, costs, problems, attempt, time.perf_counter() - start)
    if progress:
        _say(f"hf-specdecpp: {result.describe()}")
    return result


_MEMORY: dict[tuple[str, str, str], HeadPolicy | None] = {}
_LOCK = threading.Lock()


def head_fingerprint(head: AcceptanceHead) -> str:
    """A digest of the head's weights and traces (what a cached policy belongs to)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(head.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    for name, tensor in sorted((head.traces or {}).items()):
        digest.update(name.encode())
        digest.update(tensor.cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def policy_cache_dir() -> Path:
    """`$HF_SPECDECPP_CACHE/policies` (default `~/.cache/hf_specdecpp/policies`)."""
    root = Path(os.environ.get("HF_SPECDECPP_CACHE") or Path.home() / ".cache" / "hf_specdecpp").expanduser()
    return root / "policies"


def policy_for_device(head: AcceptanceHead, draft: torch.nn.Module, target: torch.nn.Module,
                      repeats: int = 3) -> HeadPolicy | None:
    """The head's policy re-calibrated for the devices `draft` and `target` run on (cached per device kind).

    The first call on a kind of device times the two models (a few dozen forward passes) and re-simulates the
    head's traces; later calls, also in later processes, read the cached policy. A cached policy that cannot be
    read or holds values no calibration chooses is measured again; a cache that cannot be written is skipped.

    Args:
        head: An acceptance head with dev traces.
        draft: The draft model as it will run.
        target: The target model as it will run.
        repeats: Timed repetitions per forward pass.

    Returns:
        The policy for this kind of device, or None when the re-calibration was refused (`recalibrate`; a warning
        says why): the caller then uses the head's own policy. Either answer is kept for the process.
    """
    kinds = (DeviceKind.of(draft), DeviceKind.of(target))
    key = (head_fingerprint(head), kinds[0].key(), kinds[1].key())
    with _LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
        path = policy_cache_dir() / key[0] / f"{key[1]}__{key[2]}.json"
        policy = _read_cached_policy(path)
        if policy is None:
            result = recalibrate(head, draft, target, max_candidates=20, repeats=repeats)
            policy = result.policy
            if policy is None:
                shipped = head.policy
                fallback = (f"the head's shipped policy (threshold {shipped.threshold:g}, max_candidates "
                            f"{shipped.max_candidates})" if shipped is not None else "the default policy")
                warn_once(f"recalibration-refused:{key}",
                          f"hf-specdecpp: {result.describe()}. Nothing was cached; using {fallback}. Re-calibrate "
                          "on a quiet machine with `hf-specdecpp recalibrate`.")
            else:
                _write_cached_policy(path, policy)
        _MEMORY[key] = policy
        return policy


def _read_cached_policy(path: Path) -> HeadPolicy | None:
    """The cached policy at `path`, or None (with a warning when a file is there but cannot be used)."""
    try:
        if not path.is_file():
            return None
        policy = HeadPolicy.from_dict(read_json_object(path, "cached policy"), source=str(path))
    except (OSError, ValueError) as err:  # unreadable, corrupt JSON, wrong fields (FileFormatError)
        warn_once(f"policy-cache-read:{path}", f"Ignoring the cached policy {path} ({err}); measuring again.")
        return None
    problems = policy.implausible()
    if problems:
        warn_once(f"policy-cache-read:{path}",
                  f"Ignoring the cached policy {path}: {'; '.join(problems)}. Measuring again.")
        return None
    return policy


def _write_cached_policy(path: Path, policy: HeadPolicy) -> None:
    """Save `policy` at `path`; a cache that cannot be written costs a warning, not the call."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, policy.to_dict())
    except OSError as err:
        warn_once(f"policy-cache-write:{path.parent}",
                  f"Cannot write the policy cache {path} ({type(err).__name__}: {err}); the re-calibrated policy is "
                  "kept in memory for this process only. Set HF_SPECDECPP_CACHE to a writable folder to keep it.")
