"""The processes a command runs in: one, or several started by `accelerate launch` / `torchrun`.

make-data splits its shards across processes by index (`owns`): a shard's content depends only on its index,
the prompts and the settings (its random seed comes from its index), so N processes that each make the shards
`index % N == rank` write the same shards as one process. The main process prepares the folder while the others
wait (`wait`), and merges their progress files into the manifest at the end (`data_folder`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Processes:
    """This process's place among the command's processes."""

    rank: int = 0
    count: int = 1
    device: torch.device | None = None  # this process's accelerator (None: the default device)
    state: Any = None  # accelerate's PartialState when there are several processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, shard: int) -> bool:
        """Whether this process makes shard `shard`."""
        return shard % self.count == self.rank

    def wait(self) -> None:
        """Wait until every process got here (nothing to wait for in a single process)."""
        if self.state is not None:
            self.state.wait_for_everyone()

    def describe(self) -> str:
        return "" if self.count == 1 else f" (process {self.rank + 1} of {self.count})"


def current_processes() -> Processes:
    """This process's rank, the process count and its device, from the launcher's environment.

    Returns:
        A single process (rank 0 of 1) unless `WORLD_SIZE` > 1; then accelerate's `PartialState` (on CPUs in
        its multi-CPU mode, over gloo) gives the rank and the device.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    device = state.device if state.device.type != "cpu" else None
    return Processes(state.process_index, state.num_processes, device, state)
