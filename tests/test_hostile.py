"""Careless and hostile uses that once lost files, replayed: each must end with exit 2 and one line,
with nothing deleted (validate everything, then touch anything)."""
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from diffgan_lib import TrainConfig, train
from diffgan_lib.cli import main
from diffgan_lib.engine import read_checkpoint

TINY = ["--data", "phantoms", "--n-images", "8", "--batch-size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny trained diffusion model (base 8, T = 50) in its own run folder."""
    folder = tmp_path_factory.mktemp("teacher")
    images = torch.rand(8, 1, 32, 32) * 2 - 1
    result = train(DataLoader(TensorDataset(images), batch_size=4), timesteps=50, device="cpu", epochs=1,
                   save_dir=folder, config=TrainConfig(base=8, checkpoint_every=0), progress=False)
    return result.checkpoint


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def fewstep(*args):
    return main(["fewstep", *TINY, *args])


def test_overwrite_never_deletes_the_teacher_it_reads(teacher, capsys):
    before = files(teacher.parent)
    assert fewstep("--init", str(teacher), "--out", str(teacher.parent), "--overwrite", "--max-steps", "1") == 2
    assert "which this command reads" in capsys.readouterr().err
    assert files(teacher.parent) == before


def test_bad_arguments_are_refused_before_an_earlier_run_is_deleted(teacher, tmp_path, capsys):
    out = tmp_path / "fs"
    assert fewstep("--init", str(teacher), "--out", str(out), "--max-steps", "2", "--adv-weight", "0") == 0
    before = files(out)
    assert fewstep("--init", str(teacher), "--out", str(out), "--levels", "9", "--overwrite") == 2
    assert "1 to 8 levels" in capsys.readouterr().err and files(out) == before
    other = tmp_path / "other"                       # another teacher: the resume file is not its run
    train(DataLoader(TensorDataset(torch.rand(8, 1, 32, 32) * 2 - 1), batch_size=4), timesteps=50, device="cpu",
          epochs=1, save_dir=other, config=TrainConfig(base=8, checkpoint_every=0, seed=1), progress=False)
    assert fewstep("--init", str(other / "final_model.pth"), "--resume", str(out / "final_model.pth"),
                   "--out", str(out), "--overwrite", "--max-steps", "3") == 2
    assert "not a few-step run of the teacher" in capsys.readouterr().err and files(out) == before


def test_a_resumed_fine_tune_never_replaces_a_longer_final_model(teacher, tmp_path, capsys):
    out = tmp_path / "fs"
    assert fewstep("--init", str(teacher), "--out", str(out), "--max-steps", "4", "--adv-weight", "0") == 0
    short = tmp_path / "short"
    assert fewstep("--init", str(teacher), "--out", str(short), "--max-steps", "2", "--adv-weight", "0") == 0
    os.replace(short / "final_model.pth", out / "interrupted.pth")   # an earlier stop of the same run
    assert fewstep("--init", str(teacher), "--out", str(out), "--resume", str(out / "interrupted.pth"),
                   "--max-steps", "3") == 2
    assert "shorter one" in capsys.readouterr().err
    assert read_checkpoint(out / "final_model.pth")["step"] == 4


def test_a_resumed_fine_tune_keeps_its_own_levels_or_refuses(teacher, tmp_path, capsys):
    out = tmp_path / "fs"
    assert fewstep("--init", str(teacher), "--out", str(out), "--max-steps", "2", "--levels", "2") == 0
    assert fewstep("--init", str(teacher), "--out", str(out), "--resume", str(out / "final_model.pth"),
                   "--max-steps", "3", "--levels", "4") == 2
    assert "levels=2" in capsys.readouterr().err
    assert fewstep("--init", str(teacher), "--out", str(out), "--resume", str(out / "final_model.pth"),
                   "--max-steps", "3") == 0
    assert read_checkpoint(out / "final_model.pth")["model"]["levels"] == [49, 24]


def sample(teacher, out, n="4"):
    return main(["sample", "--checkpoint", str(teacher), "-n", n, "--steps", "2", "--out", str(out), "--device", "cpu"])


def test_sample_never_deletes_files_it_did_not_write(teacher, tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "images").mkdir(parents=True)
    for i in range(5):
        (mine / "images" / f"sample_{i:03d}.png").write_bytes(b"my own picture")
    (mine / "grid.png").write_bytes(b"my own grid")
    before = files(mine)
    assert sample(teacher, mine) == 2
    assert "did not write" in capsys.readouterr().err and files(mine) == before


def test_sample_replaces_only_its_own_earlier_set(teacher, tmp_path, capsys):
    out = tmp_path / "s"
    assert sample(teacher, out, "5") == 0
    (out / "notes.txt").write_text("mine")
    assert sample(teacher, out, "3") == 0
    assert "replaced the earlier samples" in capsys.readouterr().out
    assert files(out) == ["grid.png", "images/sample_000.png", "images/sample_001.png", "images/sample_002.png",
                          "notes.txt", "samples.json", "samples.npy"]
    assert np.load(out / "samples.npy").shape[0] == 3


def test_a_full_disk_during_sample_leaves_the_earlier_set_intact(teacher, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s"
    assert sample(teacher, out, "3") == 0
    before = {f: (out / f).read_bytes() for f in files(out)}

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "save", no_space)
    assert sample(teacher, out, "6") == 2
    assert "the earlier samples there are intact" in capsys.readouterr().err
    assert {f: (out / f).read_bytes() for f in files(out)} == before


def test_a_failed_command_leaves_no_empty_folder(tmp_path):
    assert main(["sample", "--checkpoint", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "new")]) == 2
    assert main(["train", "--data", str(tmp_path / "no_such_folder"), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "new").exists() and not (tmp_path / "run").exists()


def test_random_bytes_are_not_called_a_pickle(tmp_path, capsys):
    bad = tmp_path / "noise.pth"
    bad.write_bytes(os.urandom(4096))
    assert main(["sample", "--checkpoint", str(bad), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "not a PyTorch checkpoint" in err and "pickled" not in err


def test_non_finite_weights_are_refused_at_load(teacher, tmp_path, capsys):
    ckpt = torch.load(teacher, weights_only=True)
    ckpt["G_ema"]["final.weight"].fill_(float("nan"))
    torch.save(ckpt, tmp_path / "nan.pth")
    assert main(["sample", "--checkpoint", str(tmp_path / "nan.pth"), "--out", str(tmp_path / "s")]) == 2
    assert "NaN or inf" in capsys.readouterr().err


def test_labels_are_names_first_and_nfc(tmp_path):
    from diffgan_lib.cli.commands import label_index
    assert label_index("1", ("x", "1")) == 1 and label_index("0", ("x", "1")) == 0
    assert label_index("cafe\u0301", ("caf\u00e9", "b")) == 0              # NFD typed, NFC stored
    with pytest.raises(ValueError, match="this model knows"):
        label_index("\u00b2", ("a", "b"))                                   # a superscript two is no index


def test_guidance_without_a_label_is_refused(tmp_path, capsys):
    from diffgan_lib.course import PRETRAINED_COND_PHANTOMS
    assert main(["sample", "--checkpoint", str(PRETRAINED_COND_PHANTOMS), "--guidance", "5", "-n", "2",
                 "--out", str(tmp_path / "s")]) == 2
    assert "needs --label" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_sizes_are_bounded_before_anything_is_allocated(tmp_path, capsys):
    from diffgan_lib.course import PRETRAINED_PURE
    assert main(["sample", "--checkpoint", str(PRETRAINED_PURE), "-n", "1000000000", "--out", str(tmp_path / "s")]) == 2
    assert "GiB" in capsys.readouterr().err
    assert main(["train", "--image-size", "8192", "--out", str(tmp_path / "t")]) == 2
    assert "above 1024" in capsys.readouterr().err
    assert main(["train", "--base", "4096", "--out", str(tmp_path / "t")]) == 2
    assert "from 8 to 256" in capsys.readouterr().err
    assert main(["train", "--timesteps", "1000000000", "--max-steps", "1", "--n-images", "8",
                 "--out", str(tmp_path / "t")]) == 2
    assert "timesteps" in capsys.readouterr().err


def test_a_fewstep_file_is_not_resumed_by_train(teacher, tmp_path, capsys):
    out = tmp_path / "fs"
    assert fewstep("--init", str(teacher), "--out", str(out), "--max-steps", "1", "--adv-weight", "0") == 0
    assert main(["train", *TINY, "--resume", str(out / "final_model.pth"), "--max-steps", "2"]) == 2
    assert "fewstep --resume" in capsys.readouterr().err


def test_a_pipe_or_a_link_loop_is_named_for_what_it_is(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.pth")
    os.symlink(tmp_path / "b.pth", tmp_path / "a.pth")
    os.symlink(tmp_path / "a.pth", tmp_path / "b.pth")
    assert main(["sample", "--checkpoint", str(tmp_path / "pipe.pth"), "--out", str(tmp_path / "s")]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tmp_path / "a.pth"), "--out", str(tmp_path / "s")]) == 2
    assert "symbolic link that leads to no file" in capsys.readouterr().err
