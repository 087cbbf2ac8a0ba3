"""Checkpoints: round trip, atomic writes, weights-only loading and the error messages."""
import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from diffgan_lib import CheckpointError, load_checkpoint, save_checkpoint
from diffgan_lib.engine import load_training_state
from diffgan_lib import TrainConfig
from diffgan_lib import train

T = 50



def tiny_run(save_dir, cfg=TrainConfig(base=8, checkpoint_every=1, adv_weight=0.01, adv_t_max=None, adv_warmup_steps=0), channels=1, epochs=1):
    images = torch.rand(8, channels, 32, 32) * 2 - 1
    return train(DataLoader(TensorDataset(images), batch_size=4), image_channels=channels, timesteps=T,
                 device="cpu", epochs=epochs, save_dir=save_dir, config=cfg, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    return folder, tiny_run(folder)


def test_round_trip_restores_ema_and_raw_generators(trained):
    folder, result = trained
    G, D, scheduler = loaded = load_checkpoint(folder / "final_model.pth", device="cpu")
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([3, 40])
    with torch.no_grad():
        assert torch.equal(G(x, t), result[0](x, t))            # the EMA weights by default
        G_raw = load_checkpoint(folder / "final_model.pth", device="cpu", which="raw")[0]
        assert torch.equal(G_raw(x, t), result.G_raw(x, t))
        assert not torch.equal(G(x, t), G_raw(x, t))
        assert torch.equal(D(x), result[1](x))
    assert scheduler.T == T and not G.training
    assert loaded.config.base == 8
    assert loaded.image_size == 32 and loaded.step == 2 and len(loaded.history["diff"]) == 2


def test_checkpoint_holds_only_plain_values(trained):
    folder, _ = trained
    ckpt = torch.load(folder / "final_model.pth", weights_only=True)   # raises on any pickled class
    assert ckpt["format"] == "diffgan_lib/checkpoint" and ckpt["version"] == 2
    assert ckpt["config"]["base"] == 8 and ckpt["model"] == {"kind": "diffusion", "in_ch": 1, "base": 8,
                                                               "time_embedding": True, "D_base": 8, "mean_path": True}


def test_atomic_save_keeps_the_previous_file(trained, tmp_path, monkeypatch):
    folder, result = trained
    G, D, scheduler = result
    path = save_checkpoint(result.G_raw, D, None, None, 0, tmp_path, final=True, scheduler=scheduler)
    good = path.read_bytes()

    def crash(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(result.G_raw, D, None, None, 1, tmp_path, final=True, scheduler=scheduler)
    monkeypatch.undo()
    assert path.read_bytes() == good and load_checkpoint(path, device="cpu")[2].T == T
    assert sorted(os.listdir(tmp_path)) == ["final_model.pth"]    # no temporary file left behind


class Payload:
    """Unpickling this would create a file: the loader must refuse before that can happen."""
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickled_objects_are_refused_and_not_run(tmp_path):
    marker = tmp_path / "was_executed"
    torch.save({"format": "diffgan_lib/checkpoint", "x": Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="not made by diffgan_lib; it is refused, because unpickling a file can run any code"):
        load_checkpoint(tmp_path / "evil.pth", device="cpu")
    assert not marker.exists()
    torch.load(tmp_path / "evil.pth", weights_only=False)       # the payload is live: a plain load runs it
    assert marker.exists()


def test_truncated_file(trained, tmp_path):
    data = (trained[0] / "final_model.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint .truncated.*earlier epoch_"):
        load_checkpoint(tmp_path / "cut.pth", device="cpu")


def test_other_pytorch_file_is_not_a_checkpoint(tmp_path):
    torch.save({"weight": torch.ones(2)}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="not a diffgan_lib checkpoint"):
        load_checkpoint(tmp_path / "plain.pth", device="cpu")


def test_missing_file_lists_the_checkpoints_there(trained):
    folder, _ = trained
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*final.pth.*epoch_0001.pth, final_model.pth"):
        load_checkpoint(folder / "final.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_training_state(folder / "nowhere" / "final_model.pth")


def test_resume_with_another_configuration_names_the_fields(trained, tmp_path):
    folder, _ = trained
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    message = r"trained with base=8, timesteps=50 but this run has base=16, timesteps=100"
    with pytest.raises(CheckpointError, match=message):
        train([images], timesteps=100, device="cpu", save_dir=tmp_path, config=TrainConfig(base=16),
              resume=folder / "final_model.pth", progress=False)
    with pytest.raises(CheckpointError, match="in_ch=1 .* in_ch=3"):
        train([images.expand(4, 3, 32, 32)], image_channels=3, timesteps=T, device="cpu", save_dir=tmp_path,
              resume=folder / "final_model.pth", progress=False)


def test_mismatched_weights_name_the_network(trained, tmp_path):
    ckpt = torch.load(trained[0] / "final_model.pth", weights_only=True)
    ckpt["model"]["base"] = 16                                  # a file whose weights contradict its config
    torch.save(ckpt, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="G weights do not fit"):
        load_checkpoint(tmp_path / "odd.pth", device="cpu")


def test_export_for_sampling_is_smaller_loads_the_ema_and_refuses_resume(tmp_path):
    from diffgan_lib.engine import export_for_sampling
    result = tiny_run(tmp_path / "run")
    full = result.checkpoint
    slim = export_for_sampling(full, tmp_path / "slim.pth")
    assert slim.stat().st_size < 0.5 * os.path.getsize(full)
    G_full = load_checkpoint(full, device="cpu")[0]
    G, D, scheduler = load_checkpoint(slim, device="cpu")
    x = torch.randn(2, 1, 32, 32)
    assert next(G.parameters()).dtype == torch.float32
    assert torch.allclose(G(x, 5), G_full(x, 5), atol=1e-2)     # float16 weights, EMA generator
    with pytest.raises(CheckpointError, match="exported for sampling only"):
        load_training_state(slim)


V1 = Path(__file__).parent / "fixtures" / "v1_base8_T50.pth"   # written by the engine before format 2


def test_a_version_1_checkpoint_loads_samples_and_resumes(tmp_path):
    from diffgan_lib import sample
    G, D, scheduler = loaded = load_checkpoint(V1, device="cpu")
    assert (loaded.kind, loaded.step, scheduler.T, loaded.config.adam_betas) == ("diffusion", 2, 50, (0.9, 0.999))
    x = sample(G, scheduler, n=2, image_size=32, sampler="ddim", steps=3, seed=0, progress=False)
    assert x.shape == (2, 1, 32, 32) and torch.isfinite(x).all()
    images = torch.rand(8, 1, 32, 32) * 2 - 1
    resumed = train(DataLoader(TensorDataset(images), batch_size=4), device="cpu", epochs=2, save_dir=tmp_path,
                    resume=V1, progress=False)
    assert resumed.history["step"] == [1, 2, 3, 4] and resumed.scheduler.T == 50
    assert torch.load(tmp_path / "final_model.pth", weights_only=True)["version"] == 2


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.pop("G"), "lacks the field"),
    (lambda c: c["model"].update(kind="hologram"), "kind 'hologram'"),
    (lambda c: c["model"].update(kind="fewstep"), r"impossible model settings \(levels=None, image_size=None, teacher"),
    (lambda c: c["model"].update(base=4096), "impossible model settings .*base=4096"),
    (lambda c: c["scheduler"].update(timesteps=2_000_000_000), "scheduler=.*2000000000"),
    (lambda c: c.update(version=9), "version 9"),
    (lambda c: c["config"].update(base="32"), r"unusable training configuration .*base='32' \(needs int\)"),
    (lambda c: c["config"].update(lr_G=None), r"unusable training configuration .*lr_G=None \(needs number\)"),
    (lambda c: c["config"].update(lr_g=1.0), "unusable training configuration .*unknown TrainConfig field.*lr_g"),
    (lambda c: c.update(config=[1, 2]), "unusable training configuration .*list, not a dict"),
])
def test_damaged_checkpoints_are_refused_before_anything_is_built(trained, tmp_path, edit, message):
    ckpt = torch.load(trained[0] / "final_model.pth", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "bad.pth", device="cpu")


def test_no_message_of_the_library_advises_weights_only_false():
    source = Path(__file__).resolve().parents[1] / "diffgan_lib"
    assert not [p.name for p in source.rglob("*.py") if "weights_only=False" in p.read_text()]


# --- which images a model was trained on ('members') ---------------------------------------------

def test_the_checkpoint_records_its_training_images(tmp_path):
    from torch.utils.data import Subset
    from diffgan_lib.engine import export_for_sampling, training_members
    from diffgan_lib import make_dataloader
    cfg = TrainConfig(base=8, checkpoint_every=0, adv_weight=0.0)
    loader = make_dataloader("phantoms", 32, 4, n=8, seed=3)
    result = train(loader, timesteps=T, device="cpu", epochs=1, save_dir=tmp_path / "a", config=cfg, progress=False)
    raw = torch.load(result.checkpoint, weights_only=True)               # plain values only
    assert raw["members"] == {"source": "phantoms", "seed": 3, "image_size": 32, "contrasts": ["ct", "t1", "t2"],
                              "lesion_prob": 0.5, "count": 8, "range": [0, 8]}
    members = training_members(result.checkpoint)
    assert members["indices"] == list(range(8)) and "range" not in members
    assert load_checkpoint(result.checkpoint, device="cpu").members == members
    assert training_members(export_for_sampling(result.checkpoint, tmp_path / "slim.pth")) == members
    picked = DataLoader(Subset(loader.dataset, [6, 1, 4, 3]), batch_size=4)       # a subset: its indices
    result = train(picked, timesteps=T, device="cpu", epochs=1, save_dir=tmp_path / "b", config=cfg, progress=False)
    assert torch.load(result.checkpoint, weights_only=True)["members"]["indices"] == [6, 1, 4, 3]
    # resumed on other data: the run no longer has one training set, and says so
    with pytest.warns(UserWarning, match="continues on other data.*members=None"):
        train(make_dataloader("phantoms", 32, 4, n=8, seed=4), device="cpu", epochs=2, save_dir=tmp_path / "b",
              resume=result.checkpoint, progress=False)
    assert training_members(tmp_path / "b" / "final_model.pth") is None


def test_files_without_a_record_load_and_say_none(trained, tmp_path):
    from diffgan_lib.engine import training_members
    assert training_members(V1) is None and load_checkpoint(V1, device="cpu").members is None
    assert training_members(trained[0] / "final_model.pth") is None                      # a TensorDataset
    ckpt = torch.load(trained[0] / "final_model.pth", weights_only=True)
    del ckpt["members"]                                                  # a version-2 file from before the record
    torch.save(ckpt, tmp_path / "old_v2.pth")
    assert load_checkpoint(tmp_path / "old_v2.pth", device="cpu").members is None


@pytest.mark.parametrize("members", [{"range": [0, 4]}, {"source": "phantoms", "range": [4, 2]},
                                     {"source": "phantoms", "indices": [1, -2]}, {"source": "x", "indices": "0:4"},
                                     {"source": "x", "range": [0, 2], "files": [1, 2]}, [0, 1]])
def test_a_damaged_record_of_the_training_images_is_refused(trained, tmp_path, members):
    ckpt = torch.load(trained[0] / "final_model.pth", weights_only=True)
    ckpt["members"] = members
    torch.save(ckpt, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="damaged record of its training images .*delete the 'members' entry"):
        load_checkpoint(tmp_path / "bad.pth", device="cpu")
