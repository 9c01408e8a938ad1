"""The prepared GPU check: one command for a session that has a GPU (about 15 minutes of device time in all).

    python benchmarks/gpu_check.py --out "$OUT"                  # on the GPU machine (default --device cuda)
    python benchmarks/gpu_check.py --device cpu --small --out X  # the dry run CI makes (tiny shapes, seconds)

Models are built from the Qwen2.5 configs in `benchmarks/gpu_configs/` with random weights (timing does not
depend on weight values; nothing is downloaded). Stages, each under a share of `--budget-s` and each recorded
even when another fails:

1. tests: the inference test suite with its tiny models on the device (HF_SPECDECPP_TEST_DEVICE);
2. equality: greedy output of both front doors and of a tree equals the target alone, in float32, for the
   0.5B draft against the 1.5B and 7B shapes (a padded-vocabulary pair: 151,936 vs 152,064 rows), with the draft
   independent of the target (rejections) and identical to it (acceptances);
3. costs: a draft step and target passes verifying K = 0..32 candidates, 0.5B draft against every target shape,
   in bf16, interleaved (`hf_specdecpp.core.costs.measure_costs`);
4. overhead: the time per round outside the two models' forward passes (CUDA events around every forward),
   for hf_specdecpp's own loop, its candidate generator inside transformers' loop, and transformers' own
   assisted generation, at acceptance 0 and 1.

Writes `gpu_check.json` and `gpu_check.md` into `--out` (commit them under docs/benchmarks/gpu-<date>/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).resolve().parent / "gpu_configs"
TARGETS = ("qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b")
INFERENCE_TESTS = ("tests/test_generation_greedy.py", "tests/test_batch.py", "tests/test_tree_greedy.py",
                   "tests/test_patch.py", "tests/test_host_syncs.py", "tests/test_models_and_versions.py")


def build(name: str, device: str, dtype: torch.dtype, small: bool, seed: int = 0):
    """A model with the architecture of `gpu_configs/<name>.json` and random weights, in eval mode on `device`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    values = json.loads((CONFIGS / f"{name}.json").read_text())
    if small:  # the same code paths in seconds: fewer, narrower layers and a small padded vocabulary
        padded = values["vocab_size"] > 151936
        values.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_window_layers=2, vocab_size=512 + (4 if padded else 0))
    config = AutoConfig.for_model(**values)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def environment(device: str) -> dict:
    import transformers

    import hf_specdecpp

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "hf_specdecpp": hf_specdecpp.__version__, "device": device,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    else:
        from hf_specdecpp.core.device import cpu_name

        info["cpu"] = cpu_name()
    return info


def stage_tests(args) -> dict:
    """The inference tests with their tiny models on the device."""
    env = dict(os.environ, HF_SPECDECPP_TEST_DEVICE=args.device)
    command = [sys.executable, "-m", "pytest", *INFERENCE_TESTS, "-q", "-m", "not slow", "-p", "no:cacheprovider",
               "-x" if args.small else "-q"]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.budget_s * 0.35)
    return {"returncode": out.returncode, "summary": out.stdout.strip().splitlines()[-1:],
            "failures": [line for line in out.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))][:30]}


def stage_equality(args) -> dict:
    """Greedy equality (float32) of both front doors and a tree against the target alone, on real shapes."""
    import hf_specdecpp  # noqa: F401  (candidate_generator=)
    from hf_specdecpp import DySpecCandidateGenerator, FixedLengthCandidateGenerator

    results = {}
    draft = build("qwen2.5-0.5b", args.device, torch.float32, args.small, seed=1)
    ids = torch.randint(10, 500, (1, 32), generator=torch.Generator().manual_seed(0)).to(args.device)
    for name in TARGETS[:2]:
        target = build(name, args.device, torch.float32, args.small, seed=2)
        twin = build(name, args.device, torch.float32, args.small, seed=2)  # the target as its own draft
        reference = target.generate(ids, max_new_tokens=16, do_sample=False)
        checks = {}
        for label, helper in (("independent draft", draft), ("identical draft", twin)):
            for method_name, method in (("fixed-K4", FixedLengthCandidateGenerator(4)),
                                        ("dyspec-B8", DySpecCandidateGenerator(budget=8))):
                out = target.generate(ids, assistant_model=helper, candidate_generator=method, max_new_tokens=16,
                                      do_sample=False)
                custom = type(method)(**_kwargs(method), draft_model=helper)
                out2 = target.generate(ids, custom_generate=custom, max_new_tokens=16, do_sample=False)
                checks[f"{label}, {method_name}"] = {
                    "candidate_generator": bool(torch.equal(out, reference)),
                    "custom_generate": bool(torch.equal(out2, reference)),
                    "accepted": method.stats.accepted_tokens}
        results[name] = checks
        del target, twin
        _free(args.device)
    return results


def _kwargs(method) -> dict:
    return {"num_candidates": method.config.num_candidates} if hasattr(method.config, "num_candidates") \
        else {"budget": method.config.budget}


def stage_costs(args, deadline: float) -> dict:
    """v(K) for K = 0..32 and the draft step, 0.5B draft against each target shape, bf16, interleaved."""
    from hf_specdecpp.core.costs import measure_costs

    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    draft = build("qwen2.5-0.5b", args.device, dtype, args.small)
    results = {}
    for name in TARGETS:
        if time.monotonic() > deadline:
            results[name] = {"skipped": "time budget"}
            continue
        try:
            target = build(name, args.device, dtype, args.small)
            ks = tuple(range(0, 33)) if not args.small else (0, 1, 2, 4, 8)
            curve = measure_costs(draft, target, prompt_length=512 if not args.small else 32, ks=ks,
                                  repeats=5 if not args.small else 2, warmup=2 if not args.small else 1)
            results[name] = curve.to_dict()
        except torch.OutOfMemoryError as err:
            results[name] = {"skipped": f"out of memory: {err}"[:300]}
        finally:
            target = None
            _free(args.device)
    return results


def stage_overhead(args) -> dict:
    """Seconds per round spent outside the two models' forward passes, at acceptance 0 and 1."""
    import hf_specdecpp  # noqa: F401
    from hf_specdecpp import FixedLengthCandidateGenerator

    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    target = build("qwen2.5-1.5b", args.device, dtype, args.small, seed=2)
    drafts = {"acceptance 1": build("qwen2.5-1.5b", args.device, dtype, args.small, seed=2),
              "acceptance 0": build("qwen2.5-0.5b", args.device, dtype, args.small, seed=1)}
    ids = torch.randint(10, 500, (1, 128), generator=torch.Generator().manual_seed(0)).to(args.device)
    results = {}
    for acceptance, draft in drafts.items():
        routes = {
            "hf_specdecpp loop (custom_generate=)": dict(custom_generate=FixedLengthCandidateGenerator(4,
                                                                                                     draft_model=draft)),
            "hf_specdecpp generator in transformers' loop": dict(
                assistant_model=draft, candidate_generator=FixedLengthCandidateGenerator(4)),
            "transformers assisted generation": dict(assistant_model=draft),
        }
        results[acceptance] = {name: _overhead(target, draft, ids, kwargs, args) for name, kwargs in routes.items()}
    return results


def _overhead(target, draft, ids, kwargs, args) -> dict:
    timer = ForwardTimer([target, draft], args.device)
    target.generate(ids, max_new_tokens=8, do_sample=False, **kwargs)  # warm-up
    timer.reset()
    start = time.perf_counter()
    out = target.generate(ids, max_new_tokens=64, do_sample=False, **kwargs)
    _sync(args.device)
    total = time.perf_counter() - start
    forwards = timer.seconds()
    timer.remove()
    rounds = timer.count(target)
    return {"total_s": total, "forward_s": forwards, "target_passes": rounds,
            "outside_forwards_per_round_ms": 1e3 * (total - forwards) / max(rounds, 1),
            "new_tokens": int(out.shape[1] - ids.shape[1])}


class ForwardTimer:
    """Time inside every forward pass of some modules: CUDA events on a GPU (no sync), perf_counter on a CPU."""

    def __init__(self, modules, device: str):
        self.cuda = device.startswith("cuda")
        self.spans: list[tuple[object, object, object]] = []
        self.handles = []
        for module in modules:
            self.handles.append(module.register_forward_pre_hook(lambda m, a, module=module: self._start(module)))
            self.handles.append(module.register_forward_hook(lambda m, a, o, module=module: self._stop(module)))
        self._open: dict[int, object] = {}

    def _now(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _start(self, module):
        self._open[id(module)] = self._now()

    def _stop(self, module):
        self.spans.append((module, self._open.pop(id(module)), self._now()))

    def reset(self):
        self.spans = []

    def count(self, module) -> int:
        return sum(1 for m, _, _ in self.spans if m is module)

    def seconds(self) -> float:
        if not self.cuda:
            return sum(stop - start for _, start, stop in self.spans)
        torch.cuda.synchronize()
        return sum(start.elapsed_time(stop) for _, start, stop in self.spans) / 1e3

    def remove(self):
        for handle in self.handles:
            handle.remove()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _free(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def markdown(report: dict) -> str:
    """The report as tables: environment, test summary, equality, v(K), overhead."""
    lines = ["# GPU check", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["environment"].items()]
    errors = {name: stage["error"] for name, stage in report.items() if isinstance(stage, dict) and "error" in stage}
    for name, error in errors.items():
        lines += ["", f"## {name}: FAILED", "", "```", error, "```"]
    lines += ["", "## Tests on the device", "", f"`{report.get('tests')}`", "", "## Greedy equality (float32)", ""]
    for target, checks in (report.get("equality") or {}).items():
        if isinstance(checks, dict):
            for name, result in checks.items():
                lines.append(f"- {target}, {name}: {result}")
    lines += ["", "## Costs (bf16): c = draft step / target step, v(K) in target steps", "",
              "| target | target step ms | c | v(1) | v(2) | v(4) | v(8) | v(16) | v(32) |", "|---|---|---|---|---|---|---|---|---|"]
    for target, curve in (report.get("costs") or {}).items():
        if isinstance(curve, dict) and "verify_cost" in curve:
            v = curve["verify_cost"]
            cells = [f"{v[str(k)]:.2f}" if str(k) in v else "-" for k in (1, 2, 4, 8, 16, 32)]
            lines.append(f"| {target} | {1e3 * curve['target_step_s']:.1f} | {curve['c_draft']:.2f} | "
                         + " | ".join(cells) + " |")
        else:
            lines.append(f"| {target} | {curve} |")
    lines += ["", "## Time per round outside the forward passes (ms)", "", "| acceptance | route | ms per round | "
              "target passes |", "|---|---|---|---|"]
    for acceptance, routes in (report.get("overhead") or {}).items():
        if isinstance(routes, dict):
            for route, r in routes.items():
                if isinstance(r, dict) and "outside_forwards_per_round_ms" in r:
                    lines.append(f"| {acceptance} | {route} | {r['outside_forwards_per_round_ms']:.2f} | "
                                 f"{r['target_passes']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-check"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny shapes (the CPU dry run)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget for all stages")
    parser.add_argument("--skip", nargs="*", default=[], choices=("tests", "equality", "costs", "overhead"))
    args = parser.parse_args()
    start = time.monotonic()
    report: dict = {"environment": environment(args.device)}
    stages = (("tests", lambda: stage_tests(args)), ("equality", lambda: stage_equality(args)),
              ("costs", lambda: stage_costs(args, start + 0.85 * args.budget_s)), ("overhead", lambda: stage_overhead(args)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, run in stages:
        if name in args.skip:
            continue
        began = time.monotonic()
        try:
            report[name] = run()
        except Exception:  # recorded, and the next stage still runs
            report[name] = {"error": traceback.format_exc()[-2000:]}
        report.setdefault("seconds", {})[name] = round(time.monotonic() - began, 1)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
