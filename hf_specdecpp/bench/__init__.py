"""The benchmark: every configuration on every prompt, interleaved per prompt, timed; tables, paired intervals
and plots. Imports the package's public API only."""
