"""Flow matching: the straight path, its velocity, the ODE solvers, a flow run through the one loop, its files."""
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from diffgan_lib import TrainConfig, load_checkpoint, sample, train
from diffgan_lib.cli import main
from diffgan_lib.core.flow import RectifiedFlow, velocity_from_eps
from diffgan_lib.engine import read_checkpoint
from diffgan_lib.sampling.ode import Euler, Heun

FLOW = RectifiedFlow()


class ToyVelocity(torch.nn.Module):
    """v(x, t) = x - c: the straight paths to the single image c, in closed form (for the solvers)."""
    in_ch = 1

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x, t):
        return (x - self.c) / (t.reshape(-1, 1, 1, 1) / FLOW.time_scale).clamp(min=1e-6)


def test_the_path_its_velocity_and_the_conversions():
    x0, eps, t = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8), torch.tensor([0.0, 0.3, 1.0])
    x_t = FLOW.interpolate(x0, t, eps)
    assert torch.equal(x_t[0], x0[0]) and torch.equal(x_t[2], eps[2])
    v = eps - x0
    assert torch.allclose(FLOW.predict_x0(x_t, t, v), x0, atol=1e-6)
    assert torch.allclose(velocity_from_eps(eps[:2], x_t[:2], t[:2]), v[:2], atol=1e-5)


@pytest.mark.parametrize("solver", [Euler, Heun])
def test_the_solvers_follow_a_straight_path_exactly(solver):
    """With every path straight (one image c), x_t = (1 - t) c + t x_1, and v = (x - c) / t: any step size is exact."""
    c = torch.full((1, 1, 8, 8), 0.25)
    x1 = torch.randn(4, 1, 8, 8)
    out = solver(FLOW, steps=3).sample(ToyVelocity(c), x1)
    assert torch.allclose(out, c.expand_as(out), atol=1e-4)
    assert solver(FLOW, 3).evaluations() == (3 if solver is Euler else 5)


def blobs(n=8):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 32, 32, generator=g) * 2 - 1


def flow_run(folder, max_steps, resume=None):
    dl = DataLoader(TensorDataset(blobs()), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    return train(dl, device="cpu", epochs=100, save_dir=folder, max_steps=max_steps, progress=False, resume=resume,
                 config=TrainConfig(base=8, objective="flow", checkpoint_every=0, save_every=2))


def test_a_flow_run_goes_through_the_one_loop_saves_its_kind_loads_and_resumes_exactly(tmp_path):
    straight = flow_run(tmp_path / "a", 4)
    ckpt = read_checkpoint(straight.checkpoint)
    assert ckpt["model"]["kind"] == "flow" and ckpt["scheduler"] == {"path": "rectified", "time_scale": 1000.0}
    assert ckpt["D"] is None and list(ckpt["history"]) == ["step", "epoch", "flow"]
    G, _, flow = loaded = load_checkpoint(straight.checkpoint, device="cpu")
    assert isinstance(flow, RectifiedFlow) and loaded.kind == "flow"
    for solver, calls in (("euler", 4), ("heun", 7)):
        seen = []
        hook = G.register_forward_hook(lambda *_: seen.append(1))
        x = sample(G, flow, n=2, image_size=32, sampler=solver, steps=4, seed=0, progress=False)
        hook.remove()
        assert x.shape == (2, 1, 32, 32) and len(seen) == calls
    with pytest.raises(ValueError, match="flow model.*eta=1"):
        sample(G, flow, n=2, image_size=32, steps=4, eta=1.0)
    with pytest.raises(ValueError, match="'euler' or 'heun'"):
        sample(G, flow, n=2, image_size=32, sampler="ddim", steps=4)
    flow_run(tmp_path / "b", 2)
    resumed = flow_run(tmp_path / "b", 4, resume=tmp_path / "b" / "last.pth")
    assert resumed.history["flow"] == straight.history["flow"]
    assert all(torch.equal(a, b) for a, b in zip(straight.G_raw.parameters(), resumed.G_raw.parameters()))


def test_the_command_line_trains_and_samples_a_flow_model(tmp_path, capsys):
    args = ["--data", "phantoms", "--n-images", "8", "--batch-size", "4", "--base", "8", "--device", "cpu"]
    assert main(["train", "--objective", "flow", *args, "--max-steps", "2", "--out", str(tmp_path / "f")]) == 0
    ckpt = str(tmp_path / "f" / "final_model.pth")
    assert main(["sample", "--checkpoint", ckpt, "--steps", "3", "--solver", "heun", "-n", "2",
                 "--out", str(tmp_path / "s")]) == 0
    assert main(["sample", "--checkpoint", ckpt, "--sampler", "ddim", "-n", "2", "--out", str(tmp_path / "s")]) == 2
    assert "ODE solver" in capsys.readouterr().err
    assert main(["train", "--resume", ckpt, "--objective", "diffusion", *args, "--max-steps", "3"]) == 2
    assert "a resumed run keeps" in capsys.readouterr().err


def test_flow_refuses_the_gan_term():
    with pytest.raises(ValueError, match="adv_weight=0"):
        TrainConfig(objective="flow", adv_weight=0.01)
