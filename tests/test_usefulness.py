"""Train on synthetic, test on real: AUROC and balanced accuracy by hand, the class-matched synthetic
set, and a small end-to-end TSTR run on a toy problem a classifier can learn."""
import numpy as np
import pytest
import torch

from diffgan_lib import DiffusionScheduler
from diffgan_lib import UNet
from diffgan_lib.eval.usefulness import ARMS, classifier_scores, matched_counts
from diffgan_lib.eval import auroc, balanced_accuracy, synthetic_set, tstr, tstr_table


@pytest.mark.parametrize("scores,labels,expected", [
    ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),          # perfect
    ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),          # reversed
    ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),          # all tied: chance
    ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),        # pairs (pos, neg): 0.35 > 0.1, 0.35 < 0.4, 0.8 > both
    ([1, 2, 2, 3], [0, 1, 0, 1], 0.875),                # (2 vs 1) 1, (2 vs 2) 1/2, (3 vs 1) 1, (3 vs 2) 1 -> 3.5 / 4
    ([3, 1, 2], [True, False, False], 1.0),             # booleans, one positive
])
def test_auroc_by_hand(scores, labels, expected):
    assert auroc(scores, labels) == pytest.approx(expected)


def test_auroc_equals_the_share_of_correctly_ordered_pairs():
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 5, 60).astype(float), rng.integers(0, 2, 60)   # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert auroc(scores, labels) == pytest.approx(pairs)


def test_auroc_refuses_one_class_and_nan():
    with pytest.raises(ValueError, match="needs both classes, got 3 positive"):
        auroc([1, 2, 3], [1, 1, 1])
    with pytest.raises(ValueError, match="NaN or inf"):
        auroc([1, float("nan")], [0, 1])


def test_balanced_accuracy_is_the_mean_recall():
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0]) == 0.5               # accuracy would say 0.75
    assert balanced_accuracy([0, 0, 1, 1, 2], [0, 1, 1, 1, 0]) == pytest.approx((0.5 + 1 + 0) / 3)
    scores = classifier_scores(np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]]), [0, 0, 0, 1])
    assert scores == {"accuracy": 1.0, "balanced_accuracy": 1.0, "auroc": 1.0}
    three = np.eye(3)[[0, 1, 2, 2]] * 0.8 + 0.1                               # one-vs-rest, macro mean
    assert classifier_scores(three, [0, 1, 2, 1])["auroc"] == pytest.approx(np.mean([1.0, 0.75, 5 / 6]))


def test_matched_counts_keep_the_real_class_shares():
    assert matched_counts([0, 0, 0, 1], 10) == [8, 2]                         # 7.5 / 2.5: the tie goes to class 0
    assert matched_counts([0, 1, 2], 10) == [4, 3, 3]
    assert matched_counts([0, 0, 1, 1, 2], 7, num_classes=4) == [3, 3, 1, 0]
    assert sum(matched_counts(np.arange(7) % 3, 101)) == 101


def test_synthetic_set_is_class_matched_seeded_and_in_range():
    torch.manual_seed(0)
    G, sched = UNet(1, 8, num_classes=2), DiffusionScheduler(10)
    x, y = synthetic_set(G, sched, [0, 0, 0, 1], n=8, image_size=8, steps=2, seed=1)
    assert x.shape == (8, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert y.dtype == torch.int64 and y.tolist() == [0] * 6 + [1] * 2
    assert torch.equal(x, synthetic_set(G, sched, [0, 0, 0, 1], n=8, image_size=8, steps=2, seed=1)[0])
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        synthetic_set(UNet(1, 8), sched, [0, 1], n=2, image_size=8)


def _toy(n, generator, flip=False):
    """Class 1 has a brighter 6 x 6 square in the middle of 16 x 16 noise; flip swaps the labels."""
    y = torch.arange(n) % 2
    x = 0.5 * torch.randn(n, 1, 16, 16, generator=generator)
    x[y == 1, :, 5:11, 5:11] += 0.6
    return x.clamp(-1, 1), (1 - y) if flip else y


def test_tstr_learns_a_separable_toy_problem_and_catches_useless_synthetic_images():
    g = torch.Generator().manual_seed(0)
    (x_tr, y_tr), (x_te, y_te) = _toy(48, g), _toy(40, g)
    x_sy, y_sy = _toy(48, g, flip=True)                 # "synthetic" images whose labels say the opposite
    result = tstr(x_tr, y_tr, x_sy, y_sy, x_te, y_te, seeds=(0, 1), epochs=10, batch_size=16)
    real, synthetic = result["real"], result["synthetic"]
    assert real["accuracy"]["mean"] > 0.8 and real["auroc"]["mean"] > 0.9            # chance is 0.5
    assert synthetic["auroc"]["mean"] < 0.2 and synthetic["balanced_accuracy"]["mean"] < 0.3
    assert len(real["accuracy"]["values"]) == 2 and result["real+synthetic"]["n_train"] == 96
    assert result["n_test"] == 40 and result["num_classes"] == 2
    table = tstr_table(result)
    assert all(arm in table for arm in ARMS) and " ± " in table


def test_tstr_refuses_a_one_class_test_set_and_mismatched_shapes():
    x, y = torch.zeros(4, 1, 16, 16), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="one class only"):
        tstr(x, y, x, y, x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="one image shape"):
        tstr(x, y, torch.zeros(4, 1, 8, 8), y, x, y)
    with pytest.raises(ValueError, match="integer class indices"):
        tstr(x, y.float(), x, y, x, y)
