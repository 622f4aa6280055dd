"""train.amp=auto: bfloat16 only where the device computes it natively. The decision is tested on
capability facts written by hand (both CPU kinds, CUDA with and without bf16), and detection on
the real torch of a process told to use AVX2 kernels only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from deepemocluster.errors import ConfigError
from deepemocluster.runtime.hardware import Capabilities, choose_amp, detect, resolve_amp

AVX2_ONLY = Capabilities("cpu", cpu_capability="AVX2")
AVX512_NO_BF16 = Capabilities("cpu", cpu_capability="AVX512")
SAPPHIRE_RAPIDS = Capabilities("cpu", cpu_capability="AVX512", avx512_bf16=True, amx_bf16=True)
COOPER_LAKE = Capabilities("cpu", cpu_capability="AVX512", avx512_bf16=True)


@pytest.mark.parametrize("caps", [AVX2_ONLY, AVX512_NO_BF16])
def test_auto_picks_float32_on_a_cpu_without_bf16(caps):
    use, why = choose_amp("auto", caps)
    assert use is False
    assert why == "train.amp=auto: float32, the CPU has neither AVX512-BF16 nor AMX"


def test_auto_picks_bfloat16_on_a_cpu_with_it():
    assert choose_amp("auto", SAPPHIRE_RAPIDS) == (
        True,
        "train.amp=auto: bfloat16, the CPU has AVX512-BF16 and AMX",
    )
    assert choose_amp("auto", COOPER_LAKE)[0] is True


def test_auto_follows_the_kernels_torch_and_onednn_may_use():
    """bf16 hardware whose AVX-512 kernels are switched off emulates bf16: float32."""
    capped = Capabilities("cpu", cpu_capability="AVX2", avx512_bf16=True, amx_bf16=True)
    use, why = choose_amp("auto", capped)
    assert use is False and "torch runs AVX2 kernels" in why
    onednn = Capabilities(
        "cpu", cpu_capability="AVX512", avx512_bf16=True, onednn_max_isa="AVX512_CORE"
    )
    assert choose_amp("auto", onednn)[0] is False
    bf16_isa = Capabilities(
        "cpu", cpu_capability="AVX512", amx_bf16=True, onednn_max_isa="avx512_core_amx"
    )
    assert choose_amp("auto", bf16_isa)[0] is True


def test_cuda_and_explicit_settings():
    assert choose_amp("auto", Capabilities("cuda", cuda_bf16=True))[0] is True
    assert choose_amp("auto", Capabilities("cuda", cuda_bf16=False))[0] is False
    assert choose_amp(False, SAPPHIRE_RAPIDS) == (False, "train.amp=false: float32")
    use, why = choose_amp(True, AVX2_ONLY)  # the user's explicit choice wins, with a warning
    assert use is True and "emulated" in why
    assert choose_amp(True, SAPPHIRE_RAPIDS) == (True, "train.amp=true: bfloat16")
    with pytest.raises(ConfigError, match="needs bfloat16, which this CUDA device lacks"):
        choose_amp(True, Capabilities("cuda", cuda_bf16=False))
    with pytest.raises(ConfigError, match="'train.amp': 'fast' is not one of true, false, auto"):
        choose_amp("fast", SAPPHIRE_RAPIDS)


def test_detect_reports_what_torch_reports():
    caps = detect(torch.device("cpu"))
    flags = torch.cpu.get_capabilities()
    assert caps.cpu_capability == torch.backends.cpu.get_cpu_capability()
    assert caps.avx512_bf16 == bool(flags.get("avx512_bf16", False))
    assert caps.amx_bf16 == bool(flags.get("amx_bf16", False))
    assert resolve_amp("auto", torch.device("cpu")) == choose_amp("auto", caps)


def test_a_process_limited_to_avx2_kernels_trains_in_float32():
    """ATEN_CPU_CAPABILITY=avx2 makes torch dispatch AVX2 kernels whatever the CPU: detection
    must see an AVX2-only CPU there (this is how docs/performance.md simulates one)."""
    code = (
        "import json, torch; from deepemocluster.runtime.hardware import detect, resolve_amp; "
        "d = torch.device('cpu'); c = detect(d); "
        "print(json.dumps([c.cpu_capability, c.onednn_max_isa, *resolve_amp('auto', d)]))"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    capability, isa, use, why = json.loads(done.stdout.strip().splitlines()[-1])
    assert (capability, isa, use) == ("AVX2", "AVX2", False)
    assert why.startswith("train.amp=auto: float32")
