"""Each rank's peak memory while training: what ZeRO sharding or the fused kernels actually save."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import torch

from unlearn.io import atomic_write_json

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakMemory(L.Callback):
    """Writes <default_root_dir>/memory.json: every rank's peak memory from the first to the last training step.

    On a GPU the peak is torch's allocated device memory (parameters, gradients, optimizer states, activations); on
    CPU it is the process's peak resident set (Linux VmHWM, reset when training starts), which also counts the Python
    and library overhead. `rank_bytes` lists ranks in order; `start_bytes` is each rank's memory when training begins.
    """

    def __init__(self, filename: str = "memory.json") -> None:
        """
        Args:
            filename: file name under the trainer's default_root_dir.
        """
        self.filename = filename
        self.start_bytes = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Starts measuring at the first step: the peak reset, the memory training starts from kept."""
        device = pl_module.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.start_bytes = torch.cuda.memory_allocated(device)
        else:
            self.start_bytes = _resident_bytes("VmRSS")
            CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Gathers every rank's peak and starting memory; rank zero writes them to the report file."""
        device = pl_module.device
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _resident_bytes("VmHWM")
        both = torch.tensor([peak, self.start_bytes], dtype=torch.float64, device=device)
        gathered = trainer.strategy.all_gather(both).reshape(-1, 2)  # (world, 2)
        if trainer.is_global_zero:
            report = {
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "kind": "allocated device memory" if device.type == "cuda" else "resident set (VmHWM)",
                "world_size": trainer.world_size,
                "strategy": type(trainer.strategy).__name__,
                "rank_bytes": [int(b) for b in gathered[:, 0].tolist()],
                "start_bytes": [int(b) for b in gathered[:, 1].tolist()],
            }
            path = atomic_write_json(Path(trainer.default_root_dir) / self.filename, report)
            print(f"peak memory per rank {[round(b / 2**20) for b in report['rank_bytes']]} MiB; wrote {path}")


def _resident_bytes(field: str) -> int:
    """A memory field of this process from /proc/self/status (VmRSS now, VmHWM the peak), in bytes."""
    if not STATUS.exists():
        raise RuntimeError("PeakMemory on CPU reads /proc/self/status, which only Linux has")
    kib = re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
    return int(kib.group(1)) * 1024
