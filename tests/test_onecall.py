"""The one-call generator and the discriminator on the teacher's features: shapes, what trains, files, resume."""
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from diffgan_lib import DiffusionScheduler, TrainConfig, UNet, load_checkpoint, sample, train
from diffgan_lib.cli import main
from diffgan_lib.core.feature_disc import FeatureDiscriminator
from diffgan_lib.core.onecall import OneCallGenerator, softclamp
from diffgan_lib.engine import OneCallConfig, onecall_train, read_checkpoint

SCH = DiffusionScheduler(1000)


def test_softclamp_is_the_identity_inside_and_smooth_at_the_edge():
    x = torch.tensor([-1.05, -0.5, 0.0, 0.9, 1.02], requires_grad=True)
    y = softclamp(x)
    assert torch.equal(y[1:4], x[1:4]) and y.abs().max() < 1 and softclamp(torch.tensor([-50.0, 50.0])).abs().max() <= 1
    y.sum().backward()
    assert (x.grad > 0).all()                            # a gradient everywhere, unlike a hard clamp


def test_the_generator_reads_noise_at_t_star_in_one_call():
    unet = UNet(1, 8)
    calls = []
    unet.register_forward_hook(lambda m, args, out: calls.append(args[1].unique().tolist()))
    G = OneCallGenerator(unet, SCH, t_star=400)
    x = G(torch.randn(3, 1, 32, 32))
    assert x.shape == (3, 1, 32, 32) and x.abs().max() <= 1 and calls == [[400]]
    with pytest.raises(ValueError, match="t_star"):
        OneCallGenerator(unet, SCH, t_star=1000)


def test_only_the_heads_train_and_the_gradient_reaches_the_image():
    teacher = UNet(1, 8)
    D = FeatureDiscriminator(teacher, SCH, 32, width=16, s_max=350)
    trainable = {n for n, p in D.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("heads.") for n in trainable)
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    logits = D(x, torch.tensor([0, 300]), torch.randn(2, 1, 32, 32), per_scale=True)
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is None for p in D.encoder.parameters())
    assert D.train().encoder.training is False               # frozen, always in eval mode


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher")
    result = train(DataLoader(TensorDataset(torch.rand(8, 1, 32, 32) * 2 - 1), batch_size=4), device="cpu", epochs=1,
                   save_dir=folder, config=TrainConfig(base=8, checkpoint_every=0), progress=False)
    return result.checkpoint


def loader():
    images = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return DataLoader(TensorDataset(images), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))


HELD = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
CFG = OneCallConfig(head_width=16, d_steps=1, pairs=6, pairs_steps=2)


def test_a_run_writes_heads_not_the_encoder_loads_samples_and_resumes_exactly(teacher, tmp_path):
    straight = onecall_train(teacher, loader(), CFG, 4, tmp_path / "a", HELD, progress=False, auroc_every=2)
    ckpt = read_checkpoint(straight.checkpoint)
    assert ckpt["model"]["kind"] == "onecall" and ckpt["model"]["t_star"] == 400
    assert all(k.startswith(("s_mlp", "scales", "stats")) for k in ckpt["D"])      # heads only
    auroc = ckpt["history"]["auroc"].tolist()
    assert [a == a for a in auroc] == [True, True, False, True] and all(0 <= a <= 1 for a in auroc if a == a)
    G, D, scheduler = loaded = load_checkpoint(straight.checkpoint, device="cpu")
    assert isinstance(G, OneCallGenerator) and D is None and loaded.kind == "onecall"
    x = sample(G, scheduler, n=3, image_size=32, seed=0, progress=False)
    assert x.shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match="one-call generator.*sampler='ddim' does not apply"):
        sample(G, scheduler, n=3, image_size=32, sampler="ddim", steps=50)
    onecall_train(teacher, loader(), CFG, 2, tmp_path / "b", HELD, progress=False, auroc_every=2)
    resumed = onecall_train(teacher, loader(), None, 4, tmp_path / "b", HELD, resume=tmp_path / "b" / "final_model.pth",
                            progress=False, overwrite=True, auroc_every=2)
    a, b = read_checkpoint(straight.checkpoint), read_checkpoint(resumed.checkpoint)
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"]) and all(torch.equal(a["D"][k], b["D"][k]) for k in a["D"])
    other = OneCallConfig(**{**CFG.__dict__, "seed": CFG.seed + 1})
    with pytest.raises(ValueError, match=r"was fine-tuned with seed=.*a resumed run keeps them"):
        onecall_train(teacher, loader(), other, 6, tmp_path / "b", HELD, resume=tmp_path / "b" / "final_model.pth",
                      progress=False, overwrite=True)


def test_the_command_line_makes_a_one_call_model_and_says_whether_D_learned(teacher, tmp_path, capsys):
    assert main(["fewstep", "--init", str(teacher), "--data", "phantoms", "--n-images", "8", "--levels", "1",
                 "--max-steps", "2", "--batch-size", "4", "--pairs", "4", "--out", str(tmp_path / "oc"),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "D's held-out AUROC" in out and "1 network call per image" in out
    assert main(["sample", "--checkpoint", str(tmp_path / "oc" / "final_model.pth"), "-n", "2", "--out",
                 str(tmp_path / "s"), "--device", "cpu"]) == 0


def test_a_resume_given_an_option_keeps_the_runs_own_settings_not_the_defaults(teacher, tmp_path, capsys):
    """A run made at --reg-weight 1 resumes with --pairs given: the unnamed settings are the run's, not the
    defaults (another reg_weight); an option that disagrees with the run is refused by name."""
    args = ["fewstep", "--init", str(teacher), "--data", "phantoms", "--n-images", "8", "--levels", "1",
            "--batch-size", "4", "--pairs", "4", "--out", str(tmp_path / "r"), "--device", "cpu"]
    assert main([*args, "--max-steps", "1", "--reg-weight", "1"]) == 0
    resume = ["--resume", str(tmp_path / "r" / "final_model.pth")]
    assert main([*args, "--max-steps", "2", *resume]) == 0
    assert load_checkpoint(tmp_path / "r" / "final_model.pth", device="cpu").onecall_config["reg_weight"] == 1
    capsys.readouterr()
    assert main([*args, "--max-steps", "3", "--reg-weight", "5", *resume]) != 0
    err = capsys.readouterr().err
    assert "reg_weight=1.0" in err and "leave --reg-weight out" in err


def test_lr_sets_Gs_learning_rate_and_a_bad_one_is_refused_by_name(teacher, tmp_path, capsys):
    args = ["fewstep", "--init", str(teacher), "--data", "phantoms", "--n-images", "8", "--levels", "1",
            "--batch-size", "4", "--pairs", "4", "--device", "cpu"]
    assert main([*args, "--max-steps", "1", "--lr", "3e-5", "--out", str(tmp_path / "a")]) == 0
    saved = read_checkpoint(tmp_path / "a" / "final_model.pth")
    assert saved["config"]["lr_G"] == 3e-5 and saved["opt_G"]["param_groups"][0]["lr"] == 3e-5
    capsys.readouterr()
    assert main([*args, "--max-steps", "1", "--lr", "0", "--out", str(tmp_path / "b")]) != 0
    assert "--lr 0.0: G's learning rate must be a positive number" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    resume = ["--resume", str(tmp_path / "a" / "final_model.pth"), "--out", str(tmp_path / "a")]
    assert main([*args, "--max-steps", "2", "--lr", "1e-5", *resume]) != 0      # a resumed run keeps its own
    assert "lr_G=3e-05" in (err := capsys.readouterr().err) and "leave --lr out" in err


def test_lr_reaches_the_few_step_generator_and_a_resume_keeps_it(teacher, tmp_path, capsys):
    args = ["fewstep", "--init", str(teacher), "--data", "phantoms", "--n-images", "8", "--levels", "2",
            "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "f")]
    assert main([*args, "--max-steps", "1", "--lr", "3e-5"]) == 0
    saved = read_checkpoint(tmp_path / "f" / "final_model.pth")
    assert saved["config"]["lr_G"] == 3e-5 and saved["opt_G"]["param_groups"][0]["lr"] == 3e-5
    capsys.readouterr()
    resume = ["--resume", str(tmp_path / "f" / "final_model.pth")]
    assert main([*args, "--max-steps", "2", "--lr", "1e-5", *resume]) != 0
    assert "leave --lr out" in capsys.readouterr().err


def test_a_frozen_encoder_exports_only_the_decoder_and_finds_its_teacher(teacher, tmp_path):
    import shutil
    from diffgan_lib.engine import export_for_sampling
    run = onecall_train(teacher, loader(), OneCallConfig(head_width=16, d_steps=1, freeze="encoder", pairs=6, pairs_steps=2), 2,
                        tmp_path / "f", HELD, progress=False)
    full = read_checkpoint(run.checkpoint)
    t = read_checkpoint(teacher)
    assert all(torch.equal(full["G"][k], t["G_ema"][k]) for k in full["G"] if k.startswith("down1"))   # frozen
    assert not all(torch.equal(full["G"][k], t["G_ema"][k]) for k in full["G"] if k.startswith("up1"))
    small = export_for_sampling(run.checkpoint, tmp_path / "ship" / "small.pth")
    kept = read_checkpoint(small)["G"]
    assert kept and not any(k.startswith(("down", "mid", "time_mlp")) for k in kept)
    with pytest.raises(Exception, match="beside it"):
        load_checkpoint(small, device="cpu")                  # the teacher is not beside it (yet)
    shutil.copy(teacher, tmp_path / "ship" / teacher.name)
    G = load_checkpoint(small, device="cpu")[0]
    ref = load_checkpoint(run.checkpoint, device="cpu")[0]
    z = torch.randn(2, 1, 32, 32)
    assert torch.allclose(G(z), ref(z), atol=2e-2)            # the same generator, decoder in float16


def test_the_teacher_pairs_are_made_once_kept_for_a_resume_and_made_again_for_another_teacher(teacher, tmp_path):
    from diffgan_lib.engine.pairs import PAIRS_FILE, pairs_in_folder
    cfg = OneCallConfig(head_width=16, d_steps=1, pairs=6, pairs_steps=2)
    run = onecall_train(teacher, loader(), cfg, 2, tmp_path / "p", HELD, progress=False)
    kept = torch.load(tmp_path / "p" / PAIRS_FILE, weights_only=True)
    assert kept["z"].shape == kept["x"].shape == (6, 1, 32, 32) and kept["x"].abs().max() <= 1
    reg = run.run.history["reg"]
    assert all(r > 0 for r in reg)                             # the regression term was on
    before = (tmp_path / "p" / PAIRS_FILE).stat().st_mtime_ns
    onecall_train(teacher, loader(), None, 3, tmp_path / "p", HELD, resume=tmp_path / "p" / "final_model.pth",
                  progress=False, overwrite=True)
    assert (tmp_path / "p" / PAIRS_FILE).stat().st_mtime_ns == before          # reused, not made again
    unet, _, sched = load_checkpoint(teacher, device="cpu")
    again = pairs_in_folder(tmp_path / "p", "another teacher", lambda: unet, sched, 6, 2, 0, (1, 32, 32), "cpu", False)
    assert (tmp_path / "p" / PAIRS_FILE).stat().st_mtime_ns != before and again["z"].shape == (6, 1, 32, 32)


def test_without_the_regression_term_no_pairs_are_made_and_old_files_read_as_without_it(teacher, tmp_path):
    from diffgan_lib.engine.pairs import PAIRS_FILE
    cfg = OneCallConfig(head_width=16, d_steps=1, reg_weight=0)
    run = onecall_train(teacher, loader(), cfg, 1, tmp_path / "n", HELD, progress=False)
    assert not (tmp_path / "n" / PAIRS_FILE).exists() and run.run.history["reg"] == [0.0]
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("reg_weight", "reg_pool", "pairs", "pairs_steps")}
    assert OneCallConfig.from_dict({**old, "adv_weight": 1.0}).reg_weight == 0


def test_the_one_call_options_are_refused_for_more_levels(teacher, tmp_path, capsys):
    assert main(["fewstep", "--init", str(teacher), "--levels", "4", "--reg-weight", "0", "--pairs", "8",
                 "--out", str(tmp_path / "x"), "--device", "cpu"]) != 0
    assert "--reg-weight, --pairs: the one-call fine-tune's options (--levels 1)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_run_without_pairs_refuses_the_regression_term_instead_of_dropping_it(teacher):
    from diffgan_lib.engine.onecall import onecall_run
    run = onecall_run(teacher, OneCallConfig(head_width=16, d_steps=1), "cpu")          # the default regression term, no pairs
    with pytest.raises(ValueError, match=r"needs the teacher's pairs.*OneCallConfig\(reg_weight=0\)"):
        run.step_fn(run, HELD[:4])
    alone = onecall_run(teacher, OneCallConfig(head_width=16, d_steps=1, reg_weight=0), "cpu")
    assert alone.step_fn(alone, HELD[:4])["reg"] == 0.0


def test_more_calls_renoise_the_image_and_let_the_hash_checked_teacher_finish_it(teacher, tmp_path, capsys):
    import shutil
    from diffgan_lib.engine import load_teacher
    from diffgan_lib.core.onecall import REFINE_T
    run = onecall_train(teacher, loader(), CFG, 1, tmp_path / "k", HELD, progress=False)
    G, _, sched = load_checkpoint(run.checkpoint, device="cpu")
    with pytest.raises(ValueError, match="more calls need its teacher"):
        sample(G, sched, n=2, image_size=32, steps=2)
    T = load_teacher(run.checkpoint)                          # found where it was when the fine-tune ran
    assert read_checkpoint(run.checkpoint)["model"]["teacher"]["path"] == str(teacher.resolve())
    from diffgan_lib.engine import export_for_sampling
    shared = export_for_sampling(run.checkpoint, tmp_path / "shared" / "oc.pth")
    assert "path" not in read_checkpoint(shared)["model"]["teacher"]          # no machine path in a shared file
    with pytest.raises(Exception, match="found neither beside it nor among the shipped models"):
        load_teacher(shared)                                  # the teacher file is in another folder
    assert torch.equal(next(load_teacher(shared, teacher=teacher).parameters()), next(T.parameters()))
    calls = []
    T.register_forward_hook(lambda m, args, out: calls.append(args[1].unique().tolist()))
    one = sample(G, sched, n=3, image_size=32, seed=0, progress=False)
    four = sample(G, sched, n=3, image_size=32, seed=0, steps=4, teacher=T, progress=False)
    assert calls == [[REFINE_T], [33], [17]] and four.shape == one.shape and not torch.equal(four, one)
    assert four.abs().max() <= 1                               # the teacher's x̂0 is clipped
    with pytest.raises(ValueError, match="not one: leave it out"):
        sample(load_checkpoint(teacher, device="cpu")[0], sched, n=1, image_size=32, teacher=T)
    with pytest.raises(Exception, match="is not it: name the file it was fine-tuned from"):
        load_teacher(run.checkpoint, teacher=run.checkpoint)
    shutil.copy(teacher, tmp_path / "shared" / teacher.name)   # beside it: found without being named
    assert main(["sample", "--checkpoint", str(shared), "-n", "2", "--steps", "2", "--out",
                 str(tmp_path / "s2"), "--device", "cpu"]) == 0
    assert main(["sample", "--checkpoint", str(run.checkpoint), "-n", "2", "--teacher", str(teacher), "--out",
                 str(tmp_path / "s1"), "--device", "cpu"]) != 0
    assert "--teacher: the teacher finishes a one-call model's images when --steps is 2 or more" in capsys.readouterr().err
    assert not (tmp_path / "s1").exists()


def test_stochastic_pairs_are_seeded_and_kept_apart_from_deterministic_ones(teacher, tmp_path):
    from diffgan_lib.engine.pairs import PAIRS_FILE, make_pairs, pairs_in_folder
    unet, _, sched = load_checkpoint(teacher, device="cpu")
    a0, a1, b1 = (make_pairs(unet, sched, 4, 3, 0, (1, 32, 32), "cpu", progress=False, eta=e) for e in (0, 1, 1))
    assert torch.equal(a0["z"], a1["z"]) and not torch.equal(a0["x"], a1["x"]) and torch.equal(a1["x"], b1["x"])
    pairs_in_folder(tmp_path, "sha", lambda: unet, sched, 4, 3, 0, (1, 32, 32), "cpu", False)
    made = torch.load(tmp_path / PAIRS_FILE, weights_only=True)["made_by"]
    assert "eta" not in made                                   # files from before eta was a setting stay valid
    again = pairs_in_folder(tmp_path, "sha", lambda: unet, sched, 4, 3, 0, (1, 32, 32), "cpu", False, eta=1.0)
    assert torch.equal(again["x"], a1["x"])                    # made again, not the eta-0 file
    with pytest.raises(ValueError, match="pairs_eta"):
        OneCallConfig(pairs_eta=2.0)


def test_freezing_most_of_G_trains_only_the_outer_decoder_and_exports_only_it(teacher, tmp_path):
    import shutil
    from diffgan_lib.engine import export_for_sampling
    run = onecall_train(teacher, loader(), OneCallConfig(head_width=16, d_steps=1, freeze="most", pairs=6, pairs_steps=2),
                        2, tmp_path / "m", HELD, progress=False)
    full, t = read_checkpoint(run.checkpoint), read_checkpoint(teacher)
    assert all(torch.equal(full["G"][k], t["G_ema"][k]) for k in full["G"] if k.startswith(("mid", "up3")))
    assert not all(torch.equal(full["G"][k], t["G_ema"][k]) for k in full["G"] if k.startswith("up1"))
    small = export_for_sampling(run.checkpoint, tmp_path / "ship" / "small.pth")
    assert {k.split(".")[0] for k in read_checkpoint(small)["G"]} <= {"up2", "up1", "final", "mean_proj"}
    shutil.copy(teacher, tmp_path / "ship" / teacher.name)
    z = torch.randn(2, 1, 32, 32)
    assert torch.allclose(load_checkpoint(small, device="cpu")[0](z), load_checkpoint(run.checkpoint, device="cpu")[0](z),
                          atol=2e-2)
    with pytest.raises(ValueError, match="freeze='all'"):
        OneCallConfig(freeze="all")


def test_the_teacher_denoise_term_moves_G_and_needs_no_gradient_through_the_teacher(teacher):
    from diffgan_lib.engine.onecall import onecall_run
    runs = [onecall_run(teacher, OneCallConfig(head_width=16, d_steps=1, reg_weight=0, denoise_weight=w), "cpu")
            for w in (0.0, 1.0)]
    assert "teacher" not in runs[0].aux and not any(p.requires_grad for p in runs[1].aux["teacher"].parameters())
    for run in runs:
        run.step_fn(run, HELD[:4])
    a, b = (dict(r.G.unet.named_parameters()) for r in runs)
    assert not all(torch.equal(a[k], b[k]) for k in a)         # the same seed: only the denoise term differs
    with pytest.raises(ValueError, match="denoise_weight"):
        OneCallConfig(denoise_weight=-1.0)
