"""Folders, interrupts and exit codes: one run per folder, the lock, stale files, fail-fast checks, no mixing."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from diffgan_lib.engine import read_checkpoint
from diffgan_lib.cli import main
from diffgan_lib import TrainConfig
from diffgan_lib.engine.rundir import LOCK_NAME
from diffgan_lib import train

T = 50
CFG = TrainConfig(base=8, checkpoint_every=0)
CLI_TRAIN = ["train", "--data", "phantoms", "--n-images", "8", "--image-size", "32", "--base", "8", "--epochs", "1",
             "--batch-size", "4", "--timesteps", "50", "--device", "cpu"]


def run(folder, config=CFG, **kw):
    """2 steps per epoch on 8 random images in [-1, 1]."""
    kw.setdefault("epochs", 1)
    images = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return train(DataLoader(TensorDataset(images), batch_size=4), timesteps=T, device="cpu", save_dir=folder,
                 config=config, progress=False, **kw)


def stop_at(step):
    def callback(info):
        if info.step == step:
            raise KeyboardInterrupt
    return callback


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------ one run, one folder
def test_a_folder_with_another_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    run(tmp_path, CFG.replace(checkpoint_every=1))
    before = (tmp_path / "final_model.pth").read_bytes()
    with pytest.raises(ValueError, match=r"already holds another run's checkpoints \(epoch_0001.pth, final_model.pth\)"
                                         r".*--resume .*final_model.pth.*--overwrite"):
        run(tmp_path)
    assert (tmp_path / "final_model.pth").read_bytes() == before           # nothing touched
    resumed = run(tmp_path, resume=tmp_path / "final_model.pth", epochs=2)  # its own folder: allowed
    assert resumed.history["step"] == [1, 2, 3, 4]
    run(tmp_path, overwrite=True)                                           # the old run goes first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final_model.pth", "history.json"]
    assert read_checkpoint(tmp_path / "final_model.pth")["step"] == 2


def test_overwrite_on_the_command_line_and_the_refusal_names_both_choices(tmp_path, capsys):
    assert main([*CLI_TRAIN, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main([*CLI_TRAIN, "--out", str(tmp_path)]) == 2
    err = one_line_error(capsys)
    assert "already holds another run's checkpoints" in err and "--resume" in err and "--overwrite" in err
    assert main([*CLI_TRAIN, "--out", str(tmp_path), "--overwrite"]) == 0


def test_a_locked_folder_is_refused_naming_the_pid(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(f"{sleeper.pid} {socket.gethostname()}\n")
        with pytest.raises(ValueError, match=rf"in use by another training run \(process {sleeper.pid} on"):
            run(tmp_path)
        assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(sleeper.pid)   # the other run's lock stays
        assert not (tmp_path / "final_model.pth").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_stale_lock_is_taken_over_and_the_lock_goes_at_the_end_also_after_an_error(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / LOCK_NAME).write_text(f"{gone.pid} {socket.gethostname()}\n")
    with pytest.warns(UserWarning, match=rf"left by process {gone.pid}, which is no longer running"):
        run(tmp_path)
    assert not (tmp_path / LOCK_NAME).exists()
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):                     # an error inside the loop
        train([torch.full((4, 1, 32, 32), 100.0)], timesteps=T, device="cpu", save_dir=tmp_path / "b", config=CFG,
              progress=False)
    assert not (tmp_path / "b" / LOCK_NAME).exists()


def test_resume_never_replaces_a_longer_final_without_being_told(tmp_path):
    run(tmp_path, CFG.replace(checkpoint_every=1), epochs=3)                # final_model.pth: step 6
    with pytest.raises(ValueError, match=r"ends a run at step 6, but this run stops at step 4 .*--max-steps past 6"
                                         r".*--overwrite"):
        run(tmp_path, resume=tmp_path / "epoch_0001.pth", epochs=2)
    assert read_checkpoint(tmp_path / "final_model.pth")["step"] == 6
    run(tmp_path, resume=tmp_path / "epoch_0001.pth", epochs=2, overwrite=True)
    assert read_checkpoint(tmp_path / "final_model.pth")["step"] == 4


def test_resume_writes_where_it_is_told(tmp_path, capsys):
    assert main([*CLI_TRAIN, "--out", str(tmp_path / "a")]) == 0
    assert main(["train", "--data", "phantoms", "--n-images", "8", "--epochs", "2", "--batch-size", "4", "--device",
                 "cpu", "--resume", str(tmp_path / "a" / "final_model.pth"), "--out", str(tmp_path / "b")]) == 0
    assert read_checkpoint(tmp_path / "a" / "final_model.pth")["step"] == 2
    assert read_checkpoint(tmp_path / "b" / "final_model.pth")["step"] == 4


# ------------------------------------------------------------------------------------- interrupts
def test_an_interrupt_renames_the_earlier_final_so_it_never_looks_current(tmp_path, capsys):
    run(tmp_path)                                                           # final_model.pth at step 2
    stopped = run(tmp_path, resume=tmp_path / "final_model.pth", epochs=3, callback=stop_at(3))
    assert stopped.stopped_by == "KeyboardInterrupt"
    assert not (tmp_path / "final_model.pth").exists()
    assert read_checkpoint(tmp_path / "final_model_step_2.pth")["step"] == 2
    assert read_checkpoint(tmp_path / "interrupted.pth")["step"] == 3
    assert "renamed the earlier final_model.pth to final_model_step_2.pth" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- fail fast
@pytest.mark.parametrize("make,message", [
    (lambda p: (p / "f").write_text("x") and p / "f", "is a file, not a folder"),
    (lambda p: (p / "f").write_text("x") and p / "f" / "run", "lies below .*f, which is a file"),
])
def test_an_unusable_out_exits_2_before_anything_is_trained(tmp_path, capsys, make, message):
    import re
    out = make(tmp_path)
    assert main([*CLI_TRAIN, "--out", str(out)]) == 2
    assert re.search(message, one_line_error(capsys))
    with pytest.raises(ValueError, match=message):
        run(out)
    assert not list(tmp_path.rglob("*.pth"))


def test_a_read_only_out_exits_2(tmp_path, capsys, monkeypatch):
    import diffgan_lib.data.files as folders

    def refuse(folder):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(folders, "_probe", refuse)
    assert main([*CLI_TRAIN, "--out", str(tmp_path / "ro")]) == 2
    assert "cannot be written (Permission denied)" in one_line_error(capsys)
    monkeypatch.undo()
    if os.geteuid() != 0:                       # root writes anywhere: the real case only for a user
        (tmp_path / "real").mkdir(mode=0o555)
        assert main([*CLI_TRAIN, "--out", str(tmp_path / "real")]) == 2
        assert "cannot be written" in one_line_error(capsys)


def test_temporary_files_of_killed_saves_are_removed_at_the_next_save(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    dead = tmp_path / ".final_model.pth.999999999.tmp"          # no such pid
    live = tmp_path / f".last.pth.{os.getppid()}.tmp"            # a save still running elsewhere
    dead.write_bytes(b"half")
    live.write_bytes(b"half")
    run(tmp_path)
    assert not dead.exists() and live.exists()


def test_a_diverging_run_saves_nothing_new_and_names_the_last_checkpoint(tmp_path):
    def poison(info):                        # after epoch_0001.pth (step 2), step 4 diverges
        if info.step == 3:
            with torch.no_grad():
                info.G_raw.final.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"step 4: loss diff=nan is not finite.*last checkpoint on disk is "
                                                 r".*epoch_0001.pth \(step 2\).*--resume .*epoch_0001.pth --lr 2e-05"):
        run(tmp_path, CFG.replace(checkpoint_every=1), epochs=3, callback=poison)
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["epoch_0001.pth"]
    with pytest.raises(FloatingPointError, match="No checkpoint was saved before it diverged.*--lr 2e-05"):
        run(tmp_path / "b", callback=lambda info: info.G_raw.final.weight.data.fill_(float("nan")))


def test_a_diverging_command_line_run_exits_2(tmp_path, capsys):
    assert main([*CLI_TRAIN, "--lr", "1e30", "--epochs", "5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err                  # the progress bar, closed, then the message alone
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("python -m diffgan_lib train: error: step ")
    assert "not finite" in last and "--lr" in last


# ------------------------------------------------------------------------------------ never mixed
def test_sample_replaces_its_own_earlier_outputs_and_nothing_else(tmp_path, capsys):
    ckpt = run(tmp_path / "run").checkpoint
    out = tmp_path / "s"
    args = ["sample", "--checkpoint", str(ckpt), "--steps", "2", "--out", str(out), "--device", "cpu"]
    assert main([*args, "-n", "5"]) == 0
    (out / "notes.txt").write_text("mine")
    (out / "images" / "mine.png").write_bytes(b"x")
    assert main([*args, "-n", "2"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == ["mine.png", "sample_000.png", "sample_001.png"]
    assert np.load(out / "samples.npy").shape[0] == 2 and (out / "notes.txt").read_text() == "mine"
    assert "replaced the earlier samples" in capsys.readouterr().out


def test_ensure_checkpoint_leaves_another_run_alone(tmp_path):
    from diffgan_lib.course import ensure_checkpoint
    (tmp_path / "interrupted.pth").write_bytes(b"a student's stopped run")
    got = ensure_checkpoint(tmp_path / "final_model.pth", steps=2, base=8, n_images=32, device="cpu", progress=False)
    assert got == tmp_path / "course_fallback" / "final_model.pth" and got.exists()
    assert (tmp_path / "interrupted.pth").read_bytes() == b"a student's stopped run"
    assert not (tmp_path / "final_model.pth").exists()
