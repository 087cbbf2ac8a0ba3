"""Device picking (ERRATA 7): never crash for lack of CUDA."""
import pytest
import torch

from diffgan_lib import DiffusionScheduler, pick_device
from diffgan_lib.core import describe_device


def test_auto_pick_is_available_device():
    dev = pick_device()
    assert dev.type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        assert dev.type != "cuda"
    assert describe_device(dev).startswith(dev.type)


def test_explicit_cpu_and_bad_names():
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'gpu0' is not a device name"):
        pick_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA GPU.*device=None"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        DiffusionScheduler(device="cuda")


def test_scheduler_follows_its_input_device():
    s = DiffusionScheduler(device="cpu")
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    assert s.add_noise(x, 3)[0].dtype == torch.float64


@pytest.mark.parametrize("name", ["meta", "xpu", torch.device("meta")])
def test_only_cpu_cuda_and_mps_are_accepted(name):
    with pytest.raises(ValueError, match="'cpu', 'cuda' .* and 'mps', not on"):
        pick_device(name)
