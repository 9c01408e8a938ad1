"""`python -m stalled_make_data make-data ...`: the make-data command, except that every process stops for good
once it has recorded its first shard, so that a test can kill the run mid-way every time (a run left alone may
finish before a test sees it), wherever the machine is fast or slow."""

from __future__ import annotations

import time

from hf_specdecpp.cli import main
from hf_specdecpp.training import data

_record_shard = data.record_shard


def _record_then_stall(*args, **kwargs) -> None:
    _record_shard(*args, **kwargs)
    while True:  # the test kills the process group
        time.sleep(1)


data.record_shard = _record_then_stall

if __name__ == "__main__":
    main()
