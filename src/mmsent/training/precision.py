"""Mixed precision as a switch, not a branch: an autocast context and a scaler that may be no-ops."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from mmsent.errors import SettingsError


@dataclass(frozen=True)
class Precision:
    device_type: str
    dtype: torch.dtype | None  # None: full fp32

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    def scaler(self) -> torch.amp.GradScaler:
        # Only fp16 needs loss scaling; bf16 has fp32's range.
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[self.dtype]


def choose_precision(amp: bool, device: torch.device, dtype: str = "auto") -> Precision:
    """`dtype` auto: bf16 where the GPU computes it natively, else fp16 with loss scaling; bf16 or fp16 as
    asked (bf16 on a GPU that only emulates it is refused). On CPU, fp32 whatever `amp` says."""
    if not amp or device.type != "cuda":
        return Precision(device.type, None)
    if dtype == "bf16" and not computes_bf16(device):
        raise SettingsError(f"--amp-dtype bf16: {torch.cuda.get_device_name(device)} does not compute bf16 natively "
                            "(compute capability below 8.0, such as a T4 or V100: emulated, slower than fp32); use fp16 or auto")  # fmt: skip
    chosen = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)
    return Precision("cuda", chosen or (torch.bfloat16 if computes_bf16(device) else torch.float16))


def computes_bf16(device: torch.device) -> bool:
    """bf16 in hardware: compute capability 8.0 (Ampere) or later, or ROCm. Not torch.cuda.is_bf16_supported():
    below 8.0 it answers True where a bf16 tensor can merely be made (pytorch/pytorch#115924), and T4 and V100
    (ml.g4dn, ml.p3) then run bf16 emulated, without cuDNN's bf16 convolutions (which R3D-18 is made of)."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_properties(device).major >= 8
