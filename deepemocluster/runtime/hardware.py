"""Run-time capability detection: whether bfloat16 autocast (``train.amp``) is fast here.

On a CPU without AVX512-BF16 or AMX, bfloat16 is emulated and an epoch is slower than in float32
(docs/performance.md), so ``train.amp=auto`` asks torch what the CPU can do instead of guessing.
The decision is a pure function of :class:`Capabilities`, which tests fill in by hand to stand for
either kind of CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from deepemocluster.errors import ConfigError

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that still include bf16 dot products: below them the
# convolutions emulate bfloat16 even on a CPU that has it.
_ONEDNN_BF16_ISAS = (
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512",
    "AVX10_1_512_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX10_2_512",
    "AVX10_2_512_AMX_2",
    "ALL",
    "DEFAULT",
)


@dataclass(frozen=True)
class Capabilities:
    """What decides whether bfloat16 is fast on the device a run uses."""

    device_type: str  # "cpu" | "cuda" | ...
    cuda_bf16: bool = False  # torch.cuda.is_bf16_supported()
    cpu_capability: str = ""  # torch.backends.cpu.get_cpu_capability(): the ATen kernels in use
    avx512_bf16: bool = False  # torch.cpu.get_capabilities()["avx512_bf16"]
    amx_bf16: bool = False  # torch.cpu.get_capabilities()["amx_bf16"]
    onednn_max_isa: str = ""  # the ONEDNN_MAX_CPU_ISA cap, "" when not set

    @property
    def cpu_bf16(self) -> bool:
        """The CPU has bf16 instructions and both torch's kernels and oneDNN may use them."""
        isa_ok = not self.onednn_max_isa or self.onednn_max_isa.upper() in _ONEDNN_BF16_ISAS
        return (self.avx512_bf16 or self.amx_bf16) and self.cpu_capability == "AVX512" and isa_ok


def detect(device: torch.device) -> Capabilities:
    """The capabilities of ``device`` as torch reports them at run time."""
    if device.type == "cuda":
        return Capabilities("cuda", cuda_bf16=bool(torch.cuda.is_bf16_supported()))
    if device.type != "cpu":
        return Capabilities(device.type)
    flags = torch.cpu.get_capabilities()
    return Capabilities(
        "cpu",
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        avx512_bf16=bool(flags.get("avx512_bf16", False)),
        amx_bf16=bool(flags.get("amx_bf16", False)),
        onednn_max_isa=os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
    )


def choose_amp(setting: bool | str, caps: Capabilities) -> tuple[bool, str]:
    """(use bfloat16 autocast, why) for a ``train.amp`` value: true, false or "auto"."""
    if setting is False:
        return False, "train.amp=false: float32"
    if setting is True:
        if caps.device_type == "cuda" and not caps.cuda_bf16:
            raise ConfigError("train.amp=true needs bfloat16, which this CUDA device lacks")
        slow = caps.device_type == "cpu" and not caps.cpu_bf16
        return True, "train.amp=true: bfloat16" + (" (emulated on this CPU: slow)" if slow else "")
    if setting != "auto":
        raise ConfigError(f"config key 'train.amp': {setting!r} is not one of true, false, auto")
    if caps.device_type == "cuda":
        if caps.cuda_bf16:
            return True, "train.amp=auto: bfloat16, the CUDA device supports it"
        return False, "train.amp=auto: float32, the CUDA device lacks bfloat16"
    if caps.device_type != "cpu":
        return False, f"train.amp=auto: float32 on {caps.device_type}"
    if caps.cpu_bf16:
        which = " and ".join(
            n for n, has in (("AVX512-BF16", caps.avx512_bf16), ("AMX", caps.amx_bf16)) if has
        )
        return True, f"train.amp=auto: bfloat16, the CPU has {which}"
    if caps.avx512_bf16 or caps.amx_bf16:
        limit = f", ONEDNN_MAX_CPU_ISA={caps.onednn_max_isa}" if caps.onednn_max_isa else ""
        return False, (
            f"train.amp=auto: float32, torch runs {caps.cpu_capability} kernels{limit} "
            "(bfloat16 would be emulated)"
        )
    return False, "train.amp=auto: float32, the CPU has neither AVX512-BF16 nor AMX"


def resolve_amp(setting: bool | str, device: torch.device) -> tuple[bool, str]:
    """``train.amp`` for the device a run trains on: (use bfloat16 autocast, why)."""
    return choose_amp(setting, detect(device))
