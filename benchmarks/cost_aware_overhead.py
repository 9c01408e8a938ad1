"""Host time of the stop rules' own work per drafted token, without the models (issue 26's overhead target).

    python benchmarks/cost_aware_overhead.py

The cost-aware rule (`core.cost_aware`: calibrated prediction, running product, gain test, and its share of the
per-round rate and Newton update over 200 rounds of 6 tokens) against the threshold rule's running product, one
torch thread, median of 5 repeats. Compare with a draft step of the machine (e.g. `core.costs.measure_costs`).
"""
import time, torch, statistics
from hf_specdecpp.core.cost_aware import CostAwareStop
from hf_specdecpp.methods.specdecpp.stopping import RejectionThresholdRule
torch.set_num_threads(1)
v=[1.0]+[0.95]*4+[1+0.02*k for k in range(16)]
def run_ca(rounds=200, steps=6):
    r=CostAwareStop(None, False, 0.39, v, 20, False)
    t=time.perf_counter(); n=0
    for _ in range(rounds):
        r.start_round(1)
        for s in range(steps):
            bool(r.observe(torch.tensor([0.9]), s, torch.device("cpu"))[0]); n+=1
        r.end_round([steps],[3])
    return (time.perf_counter()-t)/n
def run_base(rounds=200, steps=6):
    t=time.perf_counter(); n=0; prod=None
    for _ in range(rounds):
        prod=None
        for s in range(steps):
            a=torch.tensor([0.9]); prod=a if prod is None else prod*a; bool((1-prod>0.25)[0]); n+=1
    return (time.perf_counter()-t)/n
for f in (run_ca, run_base): f(20)
ca=[run_ca() for _ in range(5)]; base=[run_base() for _ in range(5)]
print("cost-aware per drafted token (observe + share of end_round): %.1f us" % (1e6*statistics.median(ca)))
print("threshold product per drafted token: %.1f us" % (1e6*statistics.median(base)))
