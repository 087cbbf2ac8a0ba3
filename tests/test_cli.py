"""Command line: help texts, one-line errors with exit status 2, and a tiny train -> sample run."""
import importlib.util
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from diffgan_lib.cli import build_parser, main

HAVE_DATA = importlib.util.find_spec("diffgan_lib.data") is not None



def cli(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "diffgan_lib", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_help_explains_every_option():
    for command, parser in build_parser()._subparsers._group_actions[0].choices.items():
        for action in parser._actions:
            assert action.help, f"{command} {action.option_strings} has no help text"
    out = cli("train", "--help")
    assert out.returncode == 0 and "--adv-weight" in out.stdout and "--resume" in out.stdout


def test_a_bad_checkpoint_path_ends_in_one_line_not_a_traceback(tmp_path):
    out = cli("sample", "--checkpoint", "missing.pth", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "error: no checkpoint at missing.pth" in out.stderr


@pytest.mark.parametrize("args,message", [
    (["train", "--image-size", "36", "--epochs", "1"], "multiple of 8"),
    (["train", "--data", "no_such_folder", "--epochs", "1"], "no_such_folder"),
    (["sample", "--checkpoint", "x.pth", "--sampler", "euler"], "invalid choice: 'euler'"),
    (["train", "--epochs"], "expected one argument"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    try:
        status = main(args)
    except SystemExit as stop:       # argparse's own errors
        status = stop.code
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and message in err


@pytest.mark.skipif(not HAVE_DATA, reason="diffgan_lib.data (make_dataloader) is not there yet")
def test_train_then_sample(tmp_path, capsys):
    ckpts, out = tmp_path / "ckpts", tmp_path / "out"
    assert main(["train", "--data", "phantoms", "--n-images", "8", "--image-size", "32", "--base", "8",
                 "--epochs", "1", "--batch-size", "4", "--timesteps", "50", "--out", str(ckpts),
                 "--device", "cpu"]) == 0
    assert (ckpts / "final_model.pth").exists() and (ckpts / "history.json").exists()
    assert main(["train", "--resume", str(ckpts / "final_model.pth"), "--data", "phantoms", "--n-images", "8",
                 "--epochs", "2", "--batch-size", "4", "--device", "cpu"]) == 0   # base, T, size from the file
    assert main(["sample", "--checkpoint", str(ckpts / "final_model.pth"), "-n", "3", "--steps", "2",
                 "--out", str(out), "--device", "cpu"]) == 0
    samples = np.load(out / "samples.npy")
    assert samples.shape == (3, 1, 32, 32) and samples.dtype == np.float32
    assert 0 <= samples.min() and samples.max() <= 1
    assert len(list((out / "images").glob("*.png"))) == 3 and (out / "grid.png").exists()
    assert "wrote 3 samples" in capsys.readouterr().out
    # the default is FAST_SAMPLER's eta = 1: the same as asking for it, not the deterministic eta = 0
    for eta, folder in (("1", "eta1"), ("0", "eta0")):
        assert main(["sample", "--checkpoint", str(ckpts / "final_model.pth"), "-n", "3", "--steps", "2",
                     "--eta", eta, "--out", str(tmp_path / folder), "--device", "cpu"]) == 0
    assert np.array_equal(samples, np.load(tmp_path / "eta1" / "samples.npy"))
    assert not np.array_equal(samples, np.load(tmp_path / "eta0" / "samples.npy"))


def test_max_steps_alone_runs_that_many_steps_past_the_default_epochs(tmp_path):
    # 8 phantoms at batch 4: 2 steps an epoch, so the old default of 10 epochs would stop at step 20
    assert main(["train", "--data", "phantoms", "--n-images", "8", "--image-size", "32", "--base", "8",
                 "--max-steps", "23", "--batch-size", "4", "--timesteps", "50", "--out", str(tmp_path),
                 "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "history.json").read_text())["step"][-1] == 23


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_after_the_step_saves_and_exits_130_or_143(tmp_path, sig, status):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "diffgan_lib", "train", "--data", "phantoms", "--n-images", "16",
                             "--base", "8", "--timesteps", "50", "--epochs", "1000", "--batch-size", "4",
                             "--out", str(tmp_path), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:                       # printed once the handlers are in place
        if "Ctrl-C stops after the current step" in line:
            break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err[-2000:]
    assert (tmp_path / "interrupted.pth").exists() and not (tmp_path / "final_model.pth").exists()
    assert f"--resume {tmp_path / 'interrupted.pth'}" in err and "Traceback" not in err


@pytest.mark.parametrize("args,message", [
    (["--timesteps", "0"], "--timesteps 0: must be at least 1"),
    (["--max-steps", "-5"], "--max-steps -5: must be at least 1"),
    (["--epochs", "0"], "--epochs 0: must be at least 1"),
])
def test_counts_below_one_are_refused(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *args]) == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["train", "--adv-weight", "nan"], "adv_weight=nan must be a finite number >= 0"),
    (["train", "--lr", "inf"], "lr_G=inf must be a finite number > 0"),
    (["sample", "--checkpoint", "x.pth", "--eta", "nan"], "--eta nan: must lie in [0, 1]"),
    (["sample", "--checkpoint", "x.pth", "--eta", "-1"], "--eta -1.0: must lie in [0, 1]"),
    (["sample", "--checkpoint", "x.pth", "--eta", "2"], "--eta 2.0: must lie in [0, 1]"),
    (["sample", "--checkpoint", "x.pth", "--sampler", "ddpm", "--eta", "1"], "eta is DDIM's"),
    (["sample", "--checkpoint", "x.pth", "--image-size", "0"], "--image-size=0 is too small"),
    (["sample", "--checkpoint", "x.pth", "--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["sample", "--checkpoint", "x.pth", "--batch-size", "-4"], "--batch-size -4: must be at least 1"),
    (["sample", "--checkpoint", "x.pth", "-n", "0"], "-n 0: must be at least 1"),
    (["train", "--data", ""], "--data is empty, which would silently mean the current folder"),
    (["train", "--device", "meta"], "not on 'meta'"),
    (["train", "--data", "https://example.org/scans.zip"], "is a URL; diffgan_lib reads local files only: download"),
    (["train", "--resume", "http://example.org/a.pth"], "--resume http://example.org/a.pth is a URL"),
    (["sample", "--checkpoint", "http://example.org/a.pth"], "is a URL"),
    (["train", "--resume", ""], "--resume is empty"),
    (["sample", "--checkpoint", "x.pth", "--out", ""], "--out is empty"),
])
def test_every_bad_value_is_refused_in_one_line_naming_it(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and message in err, err
    assert not list(tmp_path.rglob("*.pth"))


def test_a_folder_given_as_checkpoint_lists_the_files_below_it(tmp_path, capsys):
    for name in ("a/final_model.pth", "a/epoch_0010.pth", "b/deep/last.pth"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert main(["sample", "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder, not a checkpoint file" in err
    assert all(str(tmp_path / n) in err for n in ("a/final_model.pth", "a/epoch_0010.pth", "b/deep/last.pth"))


def test_a_tilde_means_the_home_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["sample", "--checkpoint", "~/missing.pth"]) == 2
    assert f"no checkpoint at {tmp_path / 'missing.pth'}" in capsys.readouterr().err
    assert main(["train", "--data", "~/no_scans", "--out", str(tmp_path / "o")]) == 2
    assert f"{tmp_path / 'no_scans'} does not exist" in capsys.readouterr().err


def _class_folders(root, classes=("healthy", "lesion"), per_class=4):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_train_conditional_on_class_folders_keeps_their_names_and_resumes(tmp_path, capsys):
    import torch
    data, run = tmp_path / "scans", tmp_path / "run"
    _class_folders(data)
    common = ["--batch-size", "4", "--device", "cpu"]
    assert main(["train", "--data", str(data), "--conditional", "--labels", "folders", "--base", "8", "--timesteps",
                 "20", "--max-steps", "2", "--adv-weight", "0", "--out", str(run), *common]) == 0
    ckpt = torch.load(run / "final_model.pth", weights_only=True)
    assert ckpt["config"]["class_names"] == ["healthy", "lesion"] and ckpt["model"]["num_classes"] == 2
    assert ckpt["members"]["files"][:2] == ["healthy/0.png", "healthy/1.png"] and ckpt["members"]["count"] == 8
    # --resume knows the run is conditional on this folder's classes (no --labels needed)
    resume = ["train", "--resume", str(run / "final_model.pth"), "--data", str(data)]
    assert main([*resume, "--max-steps", "3", *common]) == 0
    (data / "tumour").mkdir()
    (data / "tumour" / "0.png").write_bytes((data / "lesion" / "0.png").read_bytes())
    capsys.readouterr()
    assert main([*resume, "--max-steps", "4", *common]) == 2
    assert "learned the classes healthy, lesion, but the sub-folders of --data" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--data", "phantoms", "--labels", "folders", "--conditional"], "--data phantoms is not a folder; phantoms and "
     "pneumoniamnist carry their own labels: drop --labels"),
    (["--data", "SCANS", "--labels", "folders"], "only a conditional model uses: add --conditional"),
    (["--data", "SCANS", "--conditional"], "put each class's images in a sub-folder named after it "
     "(DATA/CLASS_NAME/*.png) and add --labels folders"),
    (["--data", "SCANS/healthy", "--conditional", "--labels", "folders"], "at least 2 class folders"),
    (["--data", "SCANS", "--labels", "classes"], "invalid choice: 'classes'"),
])
def test_folder_labels_on_the_command_line_are_refused_with_the_fix(tmp_path, capsys, args, message):
    _class_folders(tmp_path / "scans", per_class=1)
    args = [a.replace("SCANS", str(tmp_path / "scans")) for a in args]
    try:
        status = main(["train", *args, "--max-steps", "1", "--out", str(tmp_path / "out")])
    except SystemExit as stop:       # argparse's own errors
        status = stop.code
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.rglob("*.pth"))
