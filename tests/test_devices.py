"""Device choice on machines this one is not: a fake two-GPU torch.cuda, and none."""

import pytest
import torch

from cascade.devices import resolve_device, resolve_dtype


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_picks_the_gpu(two_gpus):
    assert resolve_device("auto") == torch.device("cuda")


def test_each_gpu_the_machine_has_is_accepted(two_gpus):
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_dtype("fp16", resolve_device("cuda:1")) == torch.float16


def test_a_gpu_past_the_last_is_refused(two_gpus):
    with pytest.raises(ValueError, match=r"torch sees 2 CUDA GPU\(s\): cuda:0 to cuda:1"):
        resolve_device("cuda:2")


def test_without_a_gpu_auto_is_the_cpu_and_cuda_is_refused(no_gpu):
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            resolve_device(name)
    with pytest.raises(ValueError, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.parametrize("name", ["xla", "meta", "cuda:x", ""])
def test_other_devices_are_refused(name):
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device(name)
