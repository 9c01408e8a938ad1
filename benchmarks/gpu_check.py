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
   assisted generation, at acceptance 0 and 1;
5. compiled: the 7B target's verify pass over K + 1 tokens on a `transformers.StaticCache` prefilled with 128
   tokens, eager and through `torch.compile(model.forward)` (`--compile-backend`, inductor on CUDA, aot_eager on a
   CPU, which needs no C++ toolchain): the first call at each new K (the compile or recompile a user pays when the
   verify length varies), the steady median after warm-up, and the number of graphs dynamo built. Defaults:
   `dynamic=True`, so every K >= 1 shares one symbolic graph (K = 0, a single token, is specialised by dynamo:
   two compiles in all; `--compile-dynamic false` compiles once per K, which on a 7B does not fit this stage's
   share), and mode "default" (no CUDA graphs, which re-record per length; try `--compile-mode reduce-overhead`);
6. batch_costs (issue 18): for batches of B rows (1..64; 1, 2, 4 with --small), each a DynamicCache prefilled
   with one random 128-token prompt repeated B times, the 7B target's decode step (1 new token per row), its
   verify pass over K + 1 tokens per row (K = 0, 3, 7, 15) and the 0.5B draft's step, in bf16, interleaved; the
   cache is cropped back to the prompt after every timed pass. Per B: c_B = draft step / target step and
   v_B(K) = verify pass / target step, both at that B (v_B(0) = 1 by construction): where v_B(K) climbs towards
   K + 1, the target is no longer memory-bound and verifying candidates stops being nearly free.

7. syncs (issue 27), right after equality: what the GPU waits on (device reads and blocking host-to-device copies,
   `hf_specdecpp.bench.syncs`) per round and per drafted token, for a chain at batch 1 and 8 and for a tree, on the
   0.5B draft and 1.5B target shapes (bf16), at 2 and 4 layers of each (the counts must not depend on the depth);
8. scaling (issue 27): decode time per generated token against the output length (stretches ending at 128, 512
   and 1024 new tokens of one call after a 128-token prompt) and the prompt length (128, 1024, 4096 tokens, 128
   new tokens), batch 1 and 4, for the target alone, SpecDec++ chains and a DySpec tree (batch 1), 0.5B draft
   and 1.5B target shapes in bf16 (`benchmarks/scaling.py`), for up to 15 % of the budget: the speculative curves
   should be as flat as the target's.

The syncs and scaling stages run right after equality on a GPU and last in the CPU dry run (`--small`).
Budget shares of `--budget-s` (450 s by default): tests up to 30 %, costs until 65 % from the start (equality in
between), overhead (a fixed, short workload), batch_costs for up to 10 % and compiled for up to 20 %, neither
past 100 %.

Writes `gpu_check.json` and `gpu_check.md` into `--out` (commit them under docs/benchmarks/gpu-<date>/).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

from hf_specdecpp.utils.timing import timed

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).resolve().parent / "gpu_configs"
TARGETS = ("qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b")
INFERENCE_TESTS = ("tests/test_generation_greedy.py", "tests/test_batch.py", "tests/test_tree_greedy.py",
                   "tests/test_patch.py", "tests/test_host_syncs.py", "tests/test_models_and_versions.py")
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
BATCH_KS = (0, 3, 7, 15)
BATCH_PREFILL = 128


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
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.budget_s * 0.30)
    return {"returncode": out.returncode, "summary": out.stdout.strip().splitlines()[-1:],
            "failures": [line for line in out.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))][:30]}


def stage_equality(args) -> dict:
    """Greedy equality (float32) of both front doors and a tree against the target alone, on real shapes."""
    import hf_specdecpp  # noqa: F401  (candidate_generator=)
    from hf_specdecpp import DySpecMethod, FixedKMethod

    results = {}
    draft = build("qwen2.5-0.5b", args.device, torch.float32, args.small, seed=1)
    ids = torch.randint(10, 500, (1, 32), generator=torch.Generator().manual_seed(0)).to(args.device)
    for name in TARGETS[:2]:
        target = build(name, args.device, torch.float32, args.small, seed=2)
        twin = build(name, args.device, torch.float32, args.small, seed=2)  # the target as its own draft
        reference = target.generate(ids, max_new_tokens=16, do_sample=False)
        checks = {}
        for label, helper in (("independent draft", draft), ("identical draft", twin)):
            for method_name, method in (("fixed-K4", FixedKMethod(4)),
                                        ("dyspec-B8", DySpecMethod(budget=8))):
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


def _sync_pair(args, layers: int | None):
    """(1.5B-shaped target, 0.5B-shaped draft, a random head for the draft) in bf16, optionally `layers` deep."""
    from hf_specdecpp import AcceptanceHead

    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    models = []
    for name, seed in (("qwen2.5-1.5b", 2), ("qwen2.5-0.5b", 1)):
        model = build(name, args.device, dtype, args.small, seed=seed)
        if layers is not None:
            model.model.layers = model.model.layers[:layers]
            model.config.num_hidden_layers = layers
            if getattr(model.config, "layer_types", None):
                model.config.layer_types = model.config.layer_types[:layers]
        models.append(model)
    torch.manual_seed(0)
    head = AcceptanceHead(models[1].config.hidden_size, 1).to(args.device)
    return models[0], models[1], head


def stage_syncs(args) -> dict:
    """Syncs (reads + blocking uploads) and staged copies per round, chain B=1 and B=8 and a tree, 2 and 4 layers."""
    import hf_specdecpp  # noqa: F401
    from hf_specdecpp import DySpecMethod, SpecDecPPMethod
    from hf_specdecpp.bench.syncs import SyncCounter

    results = {}
    for layers in (2, 4):
        target, draft, head = _sync_pair(args, layers)
        for label, batch in (("chain B=1", 1), ("chain B=8", 8), ("tree", 1)):
            ids = torch.randint(10, 500, (batch, 16 if args.small else 64),
                                generator=torch.Generator().manual_seed(batch)).to(args.device)
            method = DySpecMethod(budget=16, draft_model=draft) if label == "tree" else \
                SpecDecPPMethod(head=head, threshold=0.5, max_candidates=8, draft_model=draft)
            target.generate(ids, custom_generate=method, max_new_tokens=8, do_sample=False, eos_token_id=None,
                            pad_token_id=0)  # warm-up (pinned host blocks, kernels)
            counter = SyncCounter()
            with counter:
                out = target.generate(ids, custom_generate=method, max_new_tokens=24 if args.small else 48,
                                      do_sample=False,
                                      eos_token_id=None, pad_token_id=0, return_dict_in_generate=True)
            stats = out.speculation_stats
            summary = counter.summary()
            results[f"{label}, {layers} layers"] = dict(
                summary, rounds=stats.rounds, draft_forwards=stats.draft_forwards,
                budget=stats.draft_forwards + (1 if label == "tree" else 2) * stats.rounds,  # tests/test_host_syncs.py
                places=sorted(set(p.rsplit(" ", 1)[0] for p in counter.syncs))[:20])
        del target, draft
        _free(args.device)
    return results


def stage_scaling(args, deadline: float) -> dict:
    """Time per generated token against output and prompt length (`benchmarks/scaling.py` on the GPU shapes)."""
    import scaling  # benchmarks/scaling.py, next to this script (its folder is on sys.path when run as a script)

    target, draft, head = _sync_pair(args, None)
    small = args.small
    lengths = [4, 8] if small else [128, 512, 1024]
    options = argparse.Namespace(tree_budget=16, count=False, tiny=False, output_lengths=lengths)
    plan = [("output", 16 if small else 128, max(lengths))]  # one call, read in stretches (scaling.points_of)
    plan += [("prompt", p, 4 if small else 128) for p in ((16, 32) if small else (128, 1024, 4096))]
    vocab = target.config.vocab_size
    points, skipped = [], []
    target.generate(torch.ones((1, 8), dtype=torch.long, device=args.device), max_new_tokens=4)  # warm-up
    for batch in ((1, 2) if small else (1, 4)):
        for kind, prompt_tokens, new_tokens in plan:
            ids = torch.randint(10, min(vocab, 5000), (batch, prompt_tokens),
                                generator=torch.Generator().manual_seed(prompt_tokens)).to(args.device)
            for config in ("target", "specdec++", "tree"):
                first = not any(p.config == config for p in points)
                if batch > 1 and config == "tree":
                    continue
                if not first and time.monotonic() > deadline:  # every configuration's first point always runs
                    skipped.append(f"{config} B={batch} {kind} {prompt_tokens}+{new_tokens}")
                    continue
                clock = scaling.LengthClock(args.device, prompt_tokens)
                seconds, counts = scaling.run_one(target, draft, head, config, ids, new_tokens, options, clock)
                points += scaling.points_of(kind, config, batch, prompt_tokens, new_tokens, seconds, counts, clock,
                                            options)
    del target, draft
    _free(args.device)
    return {"points": [vars(p) for p in points], "skipped": skipped,
            "table": scaling.markdown(points, args.device, "benchmarks/gpu_check.py (stage scaling)")}


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
    from hf_specdecpp import FixedKMethod

    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    target = build("qwen2.5-1.5b", args.device, dtype, args.small, seed=2)
    drafts = {"acceptance 1": build("qwen2.5-1.5b", args.device, dtype, args.small, seed=2),
              "acceptance 0": build("qwen2.5-0.5b", args.device, dtype, args.small, seed=1)}
    ids = torch.randint(10, 500, (1, 128), generator=torch.Generator().manual_seed(0)).to(args.device)
    results = {}
    for acceptance, draft in drafts.items():
        routes = {
            "hf_specdecpp loop (custom_generate=)": dict(custom_generate=FixedKMethod(4,
                                                                                                     draft_model=draft)),
            "hf_specdecpp generator in transformers' loop": dict(
                assistant_model=draft, candidate_generator=FixedKMethod(4)),
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


def stage_compiled(args, deadline: float) -> dict:
    """Verify passes over K + 1 tokens on a prefilled static cache: eager, and a compiled forward (first call per
    K, steady median); the static cache is rewound to the prefill after every pass (see `VerifyBench`)."""
    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    ks = (0, 1, 3, 7, 15, 31) if not args.small else (0, 1, 3)
    repeats, warmup = (10, 3) if not args.small else (3, 1)
    backend = args.compile_backend or ("inductor" if args.device.startswith("cuda") else "aot_eager")
    dynamic = {"true": True, "false": False, "auto": None}[args.compile_dynamic]
    options = dict(backend=backend, dynamic=dynamic)
    if backend == "inductor":  # a mode is an inductor option; other backends refuse one
        options["mode"] = args.compile_mode
    _reset_dynamo()
    target = build("qwen2.5-7b", args.device, dtype, args.small, seed=2)
    try:
        bench = VerifyBench(target, args.device, prefill=128, max_new=max(ks) + 1)
        result = {"target": "qwen2.5-7b", "dtype": str(dtype), "prefill": bench.prefill,
                  "max_cache_len": bench.max_len, "rewind": bench.rewind_method, "backend": backend,
                  "mode": options.get("mode"), "dynamic": dynamic, "recompile_limit": _recompile_limit(),
                  "repeats": repeats, "warmup": warmup, "ks": {}}
        compiled = _compile(target.forward, options, result)
        for k in ks:
            if time.monotonic() > deadline:
                result["ks"][str(k)] = {"skipped": "time budget"}
                continue
            entry = {"eager_s": bench.median(target.forward, k, repeats, warmup)}
            if "error" in result or time.monotonic() > deadline:
                entry["compiled"] = "skipped: " + ("compile error" if "error" in result else "time budget")
            else:
                try:
                    entry.update(_compiled_times(bench, compiled, k, repeats, warmup))
                except Exception as err:  # unsupported here: eager numbers stay, the error is recorded
                    result["error"] = f"K={k}: {type(err).__name__}: {err}"[:2000]
            result["ks"][str(k)] = entry
        result["rewind"] = bench.rewind_method
        result["graphs"] = _graph_count()
        if result["graphs"] is not None:
            result["recompiles"] = max(result["graphs"] - 1, 0)
        return result
    finally:
        target = bench = compiled = None
        _reset_dynamo()
        _free(args.device)


def _compile(forward, options: dict, result: dict):
    """`torch.compile(forward, **options)`, or None with an `error` entry in `result` where this torch cannot."""
    if not hasattr(torch, "compile"):
        result["error"] = f"torch {torch.__version__} has no torch.compile"
        return None
    try:
        return torch.compile(forward, **options)
    except Exception as err:  # an unknown backend, a mode this torch lacks
        result["error"] = f"torch.compile({options}): {type(err).__name__}: {err}"[:2000]
        return None


def _compiled_times(bench, compiled, k: int, repeats: int, warmup: int) -> dict:
    """The first call at this K (compiling, or recompiling, if dynamo must), then the steady median."""
    before = _graph_count()
    first = bench.once(compiled, k)
    steady = bench.median(compiled, k, repeats, warmup)
    after = _graph_count()
    out = {"compiled_first_s": first, "compiled_steady_s": steady}
    if before is not None and after is not None:
        out["new_graphs"] = after - before
    return out


def _graph_count() -> int | None:
    """Graphs dynamo has built since its last reset, where this torch exposes the counter."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:
        return None


def _recompile_limit() -> int | None:
    config = getattr(getattr(torch, "_dynamo", None), "config", None)
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name):
            return getattr(config, name)
    return None


def _reset_dynamo() -> None:
    try:
        import torch._dynamo
        from torch._dynamo.utils import counters

        torch._dynamo.reset()
        counters.clear()
    except Exception:
        pass


class VerifyBench:
    """A model with a `transformers.StaticCache` prefilled with `prefill` tokens, and synchronised verify passes
    over K + 1 new tokens, after each of which the cache is rewound to the prefill: in place where its layers keep
    a tensor length (the static addresses a compiled graph relies on stay), else by `crop`, else by a reset and an
    untimed prefill again."""

    def __init__(self, model, device: str, prefill: int, max_new: int):
        self.model, self.device, self.prefill = model, device, prefill
        self.max_len = prefill + max_new
        self.generator = torch.Generator().manual_seed(0)
        self.cache = _static_cache(model, self.max_len, device)
        self.prompt = self._ids(prefill)
        self.takes_cache_position = "cache_position" in inspect.signature(model.forward).parameters
        self.rewind_method = "re-prefill"
        with torch.no_grad():
            self._call(model.forward, self.prompt, 0)

    def _ids(self, n: int) -> torch.Tensor:
        return torch.randint(10, 500, (1, n), generator=self.generator).to(self.device)

    def _call(self, forward, ids: torch.Tensor, start: int):
        positions = torch.arange(start, start + ids.shape[1], device=self.device)
        kwargs = {"cache_position": positions} if self.takes_cache_position else {}
        return forward(input_ids=ids, position_ids=positions[None], past_key_values=self.cache, use_cache=True,
                       **kwargs)

    def once(self, forward, k: int) -> float:
        ids = self._ids(k + 1)
        with torch.no_grad():
            _, seconds = timed(lambda: self._call(forward, ids, self.prefill), self.device)
            self.rewind()
        return seconds

    def median(self, forward, k: int, repeats: int, warmup: int) -> float:
        for _ in range(warmup):
            self.once(forward, k)
        return statistics.median(self.once(forward, k) for _ in range(repeats))

    def rewind(self) -> None:
        layers = getattr(self.cache, "layers", None) or []
        lengths = [getattr(layer, "cumulative_length", None) for layer in layers]
        if layers and all(isinstance(length, torch.Tensor) for length in lengths):
            for layer, length in zip(layers, lengths):
                length.fill_(self.prefill)
                if hasattr(layer, "cumulative_length_int"):
                    layer.cumulative_length_int = self.prefill
            self.rewind_method = "cumulative_length"
        elif getattr(self.cache, "is_croppable", False) and hasattr(self.cache, "crop"):
            _crop_to(self.cache, self.prefill)
            self.rewind_method = "crop"
        if int(self.cache.get_seq_length()) != self.prefill:  # not rewound (or wrongly): start again, untimed
            self.cache.reset()
            self._call(self.model.forward, self.prompt, 0)
            self.rewind_method = "re-prefill"


def _crop_to(cache, length: int) -> None:
    """Drop a cache's tokens past `length` with `crop(-n)`, which removes n tokens in every transformers (5.x
    `crop(tokens_to_remove)` takes only negative counts; 4.x `crop(max_length)` counts a negative from the end)."""
    extra = int(cache.get_seq_length()) - length
    if extra > 0:
        cache.crop(-extra)


def stage_batch_costs(args, deadline: float) -> dict:
    """Issue 18: target step, verify over K + 1 tokens and draft step for batches of B rows (see `BatchBench`),
    0.5B draft and the 7B target shape; stops at `deadline`, recording the batch sizes not reached."""
    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    sizes = BATCH_SIZES if not args.small else (1, 2, 4)
    repeats, warmup = (5, 2) if not args.small else (3, 1)
    result = {"target": "qwen2.5-7b", "draft": "qwen2.5-0.5b", "dtype": str(dtype), "prefill": BATCH_PREFILL,
              "ks": list(BATCH_KS), "repeats": repeats, "warmup": warmup, "batches": {}}
    if time.monotonic() > deadline:
        return dict(result, skipped="time budget")
    draft = build("qwen2.5-0.5b", args.device, dtype, args.small, seed=1)
    target = build("qwen2.5-7b", args.device, dtype, args.small, seed=2)
    try:
        for b in sizes:
            if time.monotonic() > deadline or "error" in result:
                result["batches"][str(b)] = {"skipped": "time budget" if "error" not in result else "error"}
                continue
            try:
                result["batches"][str(b)] = _batch_point(draft, target, b, args.device, repeats, warmup)
            except torch.OutOfMemoryError as err:  # larger batches would not fit either
                result["batches"][str(b)] = {"skipped": f"out of memory: {err}"[:300]}
                deadline = 0.0
            except Exception as err:  # recorded; what was measured stays
                result["error"] = f"B={b}: {type(err).__name__}: {err}"[:2000]
            _free(args.device)
    finally:
        draft = target = None
        _free(args.device)
    result["measured"] = [b for b, e in result["batches"].items() if "target_step_s" in e]
    return result


def _batch_point(draft, target, batch: int, device: str, repeats: int, warmup: int) -> dict:
    """Medians over `repeats` interleaved rounds (after `warmup`): a draft step, then a target pass over K + 1
    tokens per row for every K; the target step is the K = 0 pass, so v_B(0) = 1."""
    generator = torch.Generator().manual_seed(batch)
    began = time.monotonic()
    draft_bench = BatchBench(draft, batch, BATCH_PREFILL, device, generator)
    target_bench = BatchBench(target, batch, BATCH_PREFILL, device, generator)
    draft_times: list[float] = []
    verify_times: dict[int, list[float]] = {k: [] for k in BATCH_KS}
    for _ in range(warmup + repeats):
        draft_times.append(draft_bench(1, keep=1))  # a draft step keeps one logit row, as the loops do
        for k in BATCH_KS:
            verify_times[k].append(target_bench(k + 1))
    verify = {k: statistics.median(times[warmup:]) for k, times in verify_times.items()}
    step, draft_step = verify[0], statistics.median(draft_times[warmup:])
    return {"target_step_s": step, "draft_step_s": draft_step, "c_B": draft_step / step,
            "verify_s": {str(k): t for k, t in verify.items()}, "v_B": {str(k): t / step for k, t in verify.items()},
            "cache": type(target_bench.cache).__name__, "seconds": round(time.monotonic() - began, 2)}


class BatchBench:
    """A model whose cache (the `DynamicCache` transformers makes on the first call) holds one random prompt
    repeated over `batch` rows; `bench(n)` times a synchronised pass over n new tokens per row (the same n tokens
    in every row, no padding) and crops the cache back to the prompt."""

    def __init__(self, model, batch: int, prefill: int, device: str, generator: torch.Generator):
        self.model, self.batch, self.prefill, self.device, self.generator = model, batch, prefill, device, generator
        params = inspect.signature(model.forward).parameters
        self.keep_arg = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in params), None)
        self.cache = None
        with torch.no_grad():
            self.cache = self._call(self._ids(prefill), 0, keep=1).past_key_values

    def _ids(self, n: int) -> torch.Tensor:
        return torch.randint(10, 500, (1, n), generator=self.generator).repeat(self.batch, 1).to(self.device)

    def _call(self, ids: torch.Tensor, start: int, keep: int):
        positions = torch.arange(start, start + ids.shape[1], device=self.device)[None].expand(ids.shape[0], -1)
        kwargs = {self.keep_arg: keep} if self.keep_arg else {}
        return self.model(input_ids=ids, position_ids=positions, past_key_values=self.cache, use_cache=True,
                          **kwargs)

    def __call__(self, n: int, keep: int = 0) -> float:
        ids = self._ids(n)
        with torch.no_grad():
            _, seconds = timed(lambda: self._call(ids, self.prefill, keep), self.device)
        _crop_to(self.cache, self.prefill)
        return seconds


def _static_cache(model, max_len: int, device: str):
    """A `transformers.StaticCache` for batch 1, whatever its constructor asks for in this transformers
    (5.x: `config` and `max_cache_len`; some versions also a batch size, a device and a dtype)."""
    from transformers import StaticCache

    params = inspect.signature(StaticCache.__init__).parameters
    kwargs = {"config": model.config, "max_cache_len": max_len}
    optional = {"max_batch_size": 1, "batch_size": 1, "device": torch.device(device), "dtype": model.dtype}
    kwargs.update({name: value for name, value in optional.items() if name in params})
    return StaticCache(**kwargs)


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
    """The report as tables: environment, test summary, equality, v(K), overhead, batched costs, compiled
    verify."""
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
    lines += batch_costs_markdown(report.get("batch_costs"))
    lines += syncs_markdown(report.get("syncs"), report.get("scaling"))
    return "\n".join(lines + compiled_markdown(report.get("compiled"))) + "\n"


def syncs_markdown(syncs, scaling) -> list[str]:
    """The issue-27 sections: syncs per round against their budget, and the scaling table."""
    lines = ["", "## Host synchronisations (what the GPU waits on)", "",
             "| run | rounds | draft passes | syncs | budget (drafted + 2 per round) | reads | blocking uploads | "
             "staged copies |", "|---|---|---|---|---|---|---|---|"]
    for label, entry in (syncs or {}).items():
        if isinstance(entry, dict) and "syncs" in entry:
            lines.append(f"| {label} | {entry['rounds']} | {entry['draft_forwards']} | {entry['syncs']} | "
                         f"{entry['budget']} | {entry['read']} | {entry['upload']} | {entry['staged']} |")
    lines += ["", "## Scaling: ms per generated token", ""]
    if isinstance(scaling, dict) and "table" in scaling:
        lines.append(scaling["table"])
        if scaling.get("skipped"):
            lines.append(f"Skipped (time budget): {', '.join(scaling['skipped'])}")
    return lines


def batch_costs_markdown(batch) -> list[str]:
    """The batched-costs section: a row per batch size B, costs in target steps at that B."""
    lines = ["", "## Batched costs (7B target)", ""]
    if not isinstance(batch, dict) or "batches" not in batch:
        return lines + [f"`{batch}`"]
    lines += [f"{batch['target']} target, {batch['draft']} draft ({batch['dtype']}), B rows of one {batch['prefill']}"
              f"-token prompt in a DynamicCache, medians of {batch['repeats']} interleaved repeats; c_B = draft step "
              "/ target step and v_B(K) = verify pass over K + 1 tokens per row / target step, at the same B.", "",
              "| B | target step ms | draft step ms | c_B | v_B(3) | v_B(7) | v_B(15) |",
              "|---|---|---|---|---|---|---|"]
    for b, e in batch["batches"].items():
        if "target_step_s" not in e:
            lines.append(f"| {b} | {e.get('skipped', e)} | | | | | |")
            continue
        cells = [f"{e['v_B'][str(k)]:.2f}" if str(k) in e["v_B"] else "-" for k in (3, 7, 15)]
        lines.append(f"| {b} | {1e3 * e['target_step_s']:.2f} | {1e3 * e['draft_step_s']:.2f} | {e['c_B']:.2f} | "
                     + " | ".join(cells) + " |")
    return lines


def compiled_markdown(compiled) -> list[str]:
    """The compiled-verify section: eager and compiled seconds per K; ratio = compiled steady / eager."""
    lines = ["", "## Compiled verify (static cache)", ""]
    if not isinstance(compiled, dict) or "ks" not in compiled:
        return lines + [f"`{compiled}`"]
    lines += [f"{compiled['target']} ({compiled['dtype']}), a StaticCache of {compiled['max_cache_len']} prefilled "
              f"with {compiled['prefill']} tokens (rewound by {compiled['rewind']}); torch.compile(backend="
              f"{compiled['backend']!r}, mode={compiled['mode']!r}, dynamic={compiled['dynamic']}); graphs built: "
              f"{compiled.get('graphs')} (recompile limit {compiled.get('recompile_limit')}). "
              "First call = the compile or recompile at a new K; steady = median after warm-up; "
              "ratio = compiled steady / eager.", ""]
    if "error" in compiled:
        lines += ["Compilation failed (see above); eager times only.", ""]
    lines += ["| K | eager s | compiled first call s | compiled steady s | ratio | new graphs |",
              "|---|---|---|---|---|---|"]
    for k, e in compiled["ks"].items():
        if "eager_s" not in e:
            lines.append(f"| {k} | {e.get('skipped', e)} | | | | |")
            continue
        first, steady = e.get("compiled_first_s"), e.get("compiled_steady_s")
        cells = [f"{first:.4f}", f"{steady:.5f}", f"{steady / e['eager_s']:.2f}"] if steady else ["-", "-", "-"]
        lines.append(f"| {k} | {e['eager_s']:.5f} | " + " | ".join(cells) + f" | {e.get('new_graphs', '-')} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-check"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny shapes (the CPU dry run)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget for all stages")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("tests", "equality", "syncs", "scaling", "costs", "overhead", "batch_costs",
                                 "compiled"))
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend of the compiled stage (default: inductor on cuda, aot_eager "
                             "on cpu)")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode (inductor only)")
    parser.add_argument("--compile-dynamic", default="true", choices=("true", "false", "auto"),
                        help="torch.compile dynamic= (auto: None, dynamo decides after a second shape)")
    args = parser.parse_args()
    start = time.monotonic()
    report: dict = {"environment": environment(args.device)}
    issue27 = (("syncs", lambda: stage_syncs(args)),
               ("scaling", lambda: stage_scaling(args, min(time.monotonic() + 0.15 * args.budget_s,
                                                           start + args.budget_s))))
    stages = (("tests", lambda: stage_tests(args)), ("equality", lambda: stage_equality(args)),
              *(issue27 if not args.small else ()),  # on a GPU in the first minutes; last in the CPU dry run
              ("costs", lambda: stage_costs(args, start + 0.65 * args.budget_s)),
              ("overhead", lambda: stage_overhead(args)),
              ("batch_costs", lambda: stage_batch_costs(args, min(time.monotonic() + 0.10 * args.budget_s,
                                                                  start + args.budget_s))),
              ("compiled", lambda: stage_compiled(args, min(time.monotonic() + 0.20 * args.budget_s,
                                                            start + args.budget_s))),
              *(issue27 if args.small else ()))
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
