"""DySpec dynamic draft trees: growth policy, tree attention, verification, cache compaction, decoding loop."""

from .generator import DySpecCandidateGenerator
from .loop import tree_decode, tree_logits
from .tree import DraftTree
from .verify import recursive_rejection

__all__ = ["DraftTree", "DySpecCandidateGenerator", "recursive_rejection", "tree_decode", "tree_logits"]
