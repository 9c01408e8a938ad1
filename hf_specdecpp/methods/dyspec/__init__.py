"""DySpec (Xiong et al., 2024): dynamic draft trees verified in one target pass."""

from .config import DySpecConfig
from .generator import DySpecCandidateGenerator, DySpecMethod
from .probe import check_tree_support
from .tree import DraftTree
from .verify import recursive_rejection

__all__ = ["DraftTree", "DySpecCandidateGenerator", "DySpecConfig", "DySpecMethod", "check_tree_support",
           "recursive_rejection"]
