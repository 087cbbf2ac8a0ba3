"""DDP with torchrun (gloo, CPU): one shared launch of tests/ddp_worker.py for every check.

The worker trains 32 px phantoms with base 8, T = 50 and a per-process batch of 4 in several
scenarios, and each rank reports what it saw; see that file.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from diffgan_lib import PhantomDataset, TrainConfig, train
from diffgan_lib.engine import read_checkpoint

HERE = Path(__file__).parent
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
PURE = TrainConfig(image_size=32, base=8, adv_weight=0.0, checkpoint_every=0, seed=0,
                   precision="fp32")   # as in the worker; DDP equals one process to float32 rounding, not bf16


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([TORCHRUN, "--standalone", "--nproc_per_node", "2", str(HERE / "ddp_worker.py"), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:       # a hung rank: end torchrun *and* its workers, or they linger
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def one_process_loader(batch_size=8):
    """One process, the global batch 2 x 4, in DistributedSampler's order (what the two ranks split)."""
    ds = PhantomDataset(n=64, image_size=32, seed=0)
    return DataLoader(ds, batch_size=batch_size, drop_last=True,
                      sampler=DistributedSampler(ds, num_replicas=1, rank=0, seed=0, drop_last=True))


def bias_before_groupnorm(net) -> set:
    """Names of conv biases that feed a GroupNorm. Their exact gradient is zero (the norm subtracts
    the group mean), so what they get is float rounding, which Adam's g / sqrt(v) turns into full
    +-lr steps of random sign: such a bias differs between any two summation orders."""
    names = set()
    for prefix, module in net.named_modules():
        children = list(module.named_children())
        for (name, a), (_, b) in zip(children, children[1:]):
            if isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.GroupNorm) and a.bias is not None:
                names.add(f"{prefix}.{name}.bias".lstrip("."))
    return names


def assert_same_weights(ours: dict, theirs: dict, skip: set, atol=1e-5):
    """Every tensor equal to atol, except ``skip``. 1e-5: the two runs sum the same per-sample
    gradients in another order (a mean over 8 vs all-reduce of two means over 4), about 1e-7 relative
    per step; after Adam's normalised steps (lr 2e-4) weights agree to ~1e-6, a weight moves ~1e-3."""
    worst = {k: (ours[k] - theirs[k]).abs().max().item() for k in ours if k not in skip}
    assert max(worst.values()) < atol, sorted(worst.items(), key=lambda kv: -kv[1])[:3]


def test_both_ranks_end_with_the_same_networks(ddp):
    _, (r0, r1) = ddp
    assert r0["pure"]["G"] == r1["pure"]["G"]
    assert (r0["hybrid"]["G"], r0["hybrid"]["D"]) == (r1["hybrid"]["G"], r1["hybrid"]["D"])
    assert all(0.5 < d < 3 for d in r0["hybrid"]["D_loss"])       # D trained on every step, near 2 ln 2
    assert r0["pure"]["sharded"] == "DistributedSampler"          # make_dataloader under torchrun


def test_rank_0_writes_one_checkpoint_with_the_whole_history(ddp):
    out, (r0, r1) = ddp
    assert r0["pure"]["files"] == r1["pure"]["files"] == ["final_model.pth", "history.json"]
    ckpt = read_checkpoint(out / "pure" / "final_model.pth")
    assert ckpt["step"] == 6 and ckpt["history"]["step"].tolist() == list(range(1, 7))
    assert ckpt["data"] == {"batch_size": 8, "batches_per_epoch": 8, "world_size": 2}
    assert ckpt["G_ema"] is not None                              # the EMA lives on rank 0


def test_two_processes_match_one_process_with_twice_the_batch(ddp, tmp_path):
    out, _ = ddp
    one = train(one_process_loader(), timesteps=50, device="cpu", epochs=1, save_dir=tmp_path, config=PURE,
                max_steps=6, progress=False)
    two = read_checkpoint(out / "pure" / "final_model.pth")
    assert one.history["diff"] == pytest.approx(two["history"]["diff"].tolist(), abs=1e-6)   # same t, noise, images
    skip = bias_before_groupnorm(one.G_raw)
    assert skip                                                   # the rule is about real parameters
    assert_same_weights(one.G_raw.state_dict(), two["G"], skip)
    assert_same_weights(one.G.state_dict(), two["G_ema"], skip)


def test_a_stop_on_one_rank_stops_every_rank_at_the_same_step(ddp):
    _, (r0, r1) = ddp
    assert r0["stop"] == r1["stop"] == {"stopped_by": "KeyboardInterrupt", "steps": 3,
                                         "files": ["history.json", "interrupted.pth"]}


def test_a_nan_on_one_rank_stops_every_rank_with_the_message(ddp):
    _, (r0, r1) = ddp
    assert r0["nan"] == r1["nan"] and r0["nan"].startswith("step 3: loss diff=nan is not finite")


def test_resume_under_ddp_and_in_one_process(ddp, tmp_path):
    out, (r0, r1) = ddp
    assert r0["resumed"]["steps"] == list(range(1, 9)) and r0["resumed"]["G"] == r1["resumed"]["G"]
    single = train(one_process_loader(), device="cpu", epochs=1, save_dir=tmp_path, max_steps=8, progress=False,
                   resume=out / "pure" / "final_model.pth")    # T, config and channels from the DDP file
    assert single.history["step"] == list(range(1, 9)) and single.scheduler.T == 50
    assert_same_weights(single.G_raw.state_dict(), read_checkpoint(out / "resumed" / "final_model.pth")["G"],
                        bias_before_groupnorm(single.G_raw))


def test_what_ddp_cannot_do_is_refused_on_every_rank(ddp):
    _, (r0, r1) = ddp
    assert "dataloader is not sharded" in r0["refused"]["unsharded"] and "rank 1 of 2" in r1["refused"]["unsharded"]


def test_the_command_line_under_torchrun(ddp):
    out, (r0, r1) = ddp
    assert r0["cli_status"] == r1["cli_status"] == 0
    assert read_checkpoint(out / "cli" / "final_model.pth")["history"]["step"].tolist() == [1, 2, 3]
