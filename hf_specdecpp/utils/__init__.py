"""Layer 0: small helpers with no model logic (file I/O, timing, warnings, optional extras)."""
