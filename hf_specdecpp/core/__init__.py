"""Shared mechanics of speculative decoding that every method uses and that import no method: the draft session,
verification, caches, attention masks and positions, the chain loop, costs, devices, input validation, and the
compatibility layer over transformers releases."""
