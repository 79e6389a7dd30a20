"""--amp's precision: bf16 only where the GPU computes it natively, fp16 with loss scaling below; a checkpoint
written without loss scaling resumes under it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mmsent.errors import SettingsError
from mmsent.training.checkpointer import load_scaler_state
from mmsent.training.precision import choose_precision


@pytest.fixture
def gpu_of_capability(monkeypatch):
    """Make torch see one CUDA device of the given compute capability (major version)."""

    def fake(major: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _device: SimpleNamespace(major=major, minor=0))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda _device=None: f"a GPU of compute capability {major}.0")
        # What torch.cuda.is_bf16_supported() falls back to below 8.0: bf16 emulated, which counts as "supported".
        monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda _device: True)

    return fake


@pytest.mark.parametrize(("major", "chosen"), [(7, torch.float16), (8, torch.bfloat16), (9, torch.bfloat16)])
def test_auto_takes_bf16_only_where_the_gpu_computes_it_natively(gpu_of_capability, major, chosen):
    # T4 and V100 (ml.g4dn, ml.p3) are 7.5 and 7.0: they emulate bf16, slowly; fp16 with loss scaling is native.
    gpu_of_capability(major)
    precision = choose_precision(True, torch.device("cuda", 0))
    assert precision.dtype is chosen
    assert precision.scaler().is_enabled() is (chosen is torch.float16)


def test_bf16_asked_of_a_gpu_that_only_emulates_it_is_refused(gpu_of_capability):
    gpu_of_capability(7)
    with pytest.raises(SettingsError, match="does not compute bf16 natively"):
        choose_precision(True, torch.device("cuda", 0), "bf16")
    assert choose_precision(True, torch.device("cuda", 0), "fp16").dtype is torch.float16


def test_a_checkpoint_without_loss_scaling_resumes_under_fp16():
    """A bf16 or CPU run saves a disabled scaler's empty state: under fp16 the scaler starts afresh."""
    saved = torch.amp.GradScaler("cpu", enabled=False).state_dict()
    assert saved == {}
    scaler = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    assert load_scaler_state(scaler, saved) is False and scaler.get_scale() == 1024.0
    scaled = torch.amp.GradScaler("cpu", enabled=True, init_scale=8.0)
    assert load_scaler_state(scaler, scaled.state_dict()) is True and scaler.state_dict()["scale"] == 8.0
