"""The exact mode: noise-free counts for every policy, turned into time with the machine's cost curve.

Files, one job each: `traces` (what a stop rule sees, per prompt), `recorder` (recording a trace: the target's
greedy output, a teacher-forced draft pass, the draft's continuations after mismatches), `policies` (each stop
rule as the replay sees it), `configs` (which policy replays which configuration), `replay` (a policy on a trace:
exact rounds and forward passes), `prompt` (one prompt: replay, or counted real calls for trees and sampling),
`records`, `costs` (counts into time), `summary`, `validate` (wall clock on a subset), `outputs`, `run`.
"""
