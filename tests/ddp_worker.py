"""Run under ``torchrun --nproc_per_node 2`` by tests/test_distributed.py: every DDP check in one launch.

Each scenario trains a few steps (32 px phantoms, base 8, T = 50, gloo on the CPU) and each rank
writes what it saw to OUT/rank{r}.json, which the test reads. Usage: ``torchrun ... ddp_worker.py OUT``.
"""
import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from diffgan_lib import TrainConfig, make_dataloader, train
from diffgan_lib.cli import main as cli_main

OUT = Path(sys.argv[1])
T, B, N = 50, 4, 64          # per-process batch B: the global batch is 2B
PURE = TrainConfig(image_size=32, base=8, adv_weight=0.0, checkpoint_every=0, seed=0, precision="fp32")
HYBRID = PURE.replace(adv_weight=0.1, adv_t_max=None, adv_warmup_steps=0)


def digest(*modules) -> str:
    h = hashlib.sha256()
    for m in modules:
        for p in m.state_dict().values():
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def loader():
    return make_dataloader("phantoms", 32, B, n=N, seed=0)


def files(folder):
    dist.barrier()
    return sorted(p.name for p in Path(folder).iterdir())


def main():
    torch.set_num_threads(1)
    dist.init_process_group("gloo")            # a script may start the group itself; train() then uses it
    rank, seen = dist.get_rank(), {}
    kw = dict(timesteps=T, device="cpu", epochs=1, progress=False)

    r = train(loader(), save_dir=OUT / "pure", config=PURE, max_steps=6, **kw)
    seen["pure"] = dict(G=digest(r.G_raw), steps=r.history["step"], files=files(OUT / "pure"),
                        sharded=type(loader().sampler).__name__)

    r = train(loader(), save_dir=OUT / "hybrid", config=HYBRID, max_steps=4, **kw)
    seen["hybrid"] = dict(G=digest(r.G_raw), D=digest(r.D), D_loss=r.history["D"])

    def ctrl_c_on_rank_1(info):                # as if only rank 1 had seen the signal
        if info.rank == 1 and info.step == 3:
            raise KeyboardInterrupt
    r = train(loader(), save_dir=OUT / "stop", config=PURE, max_steps=10, callback=ctrl_c_on_rank_1, **kw)
    seen["stop"] = dict(stopped_by=r.stopped_by, steps=len(r.history["step"]), files=files(OUT / "stop"))

    def nan_on_rank_1(info):
        if info.rank == 1 and info.step == 2:
            with torch.no_grad():
                info.G_raw.final.weight.fill_(float("nan"))
    try:
        train(loader(), save_dir=OUT / "nan", config=PURE, max_steps=10, callback=nan_on_rank_1, **kw)
        seen["nan"] = "no error"
    except FloatingPointError as err:
        seen["nan"] = str(err)

    r = train(loader(), save_dir=OUT / "resumed", resume=OUT / "pure" / "final_model.pth", max_steps=8,
              progress=False, device="cpu", epochs=1)
    seen["resumed"] = dict(G=digest(r.G_raw), steps=r.history["step"])

    refused = {}
    for name, kwargs in (("unsharded", dict(dataloader=[torch.zeros(B, 1, 32, 32)], config=PURE)),):
        try:
            train(save_dir=OUT / name, max_steps=1, **kw, **kwargs)
        except ValueError as err:
            refused[name] = str(err)
    seen["refused"] = refused

    # the command line in the same group (a process that starts its own group is the done-when
    # command in the README; re-initialising a group inside one process is fragile in torch itself)
    seen["cli_status"] = cli_main(["train", "--data", "phantoms", "--n-images", str(N), "--image-size", "32",
                                   "--base", "8", "--timesteps", str(T), "--max-steps", "3", "--batch-size",
                                   str(B), "--out", str(OUT / "cli"), "--device", "cpu"])
    (OUT / f"rank{rank}.json").write_text(json.dumps(seen))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
