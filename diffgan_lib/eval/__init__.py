"""Is it any good, is it useful, is it safe: feature nets, FD / KID / SWD / diversity / memorisation,
train-on-synthetic-test-on-real, membership inference. Imports ``core`` to ``engine``."""
from .features import FeatureNet, extract_features, load_feature_net, train_feature_net
from .metrics import (diversity, evaluate, frechet_distance, kid, memorisation, real_vs_real_baseline,
                      sliced_wasserstein)
from .membership import attack_stats, bootstrap_ci, class_standardised, membership_report, smallest_fpr, tpr_at
from .privacy import closest_training_images, denoising_losses, membership_inference, overfit_control
from .usefulness import auroc, balanced_accuracy, synthetic_set, tstr, tstr_table

__all__ = ["FeatureNet", "extract_features", "load_feature_net", "train_feature_net", "diversity", "evaluate",
           "frechet_distance", "kid", "memorisation", "real_vs_real_baseline", "sliced_wasserstein",
           "attack_stats", "bootstrap_ci", "class_standardised", "membership_report", "smallest_fpr", "tpr_at",
           "closest_training_images", "denoising_losses", "membership_inference", "overfit_control", "auroc",
           "balanced_accuracy", "synthetic_set", "tstr", "tstr_table"]
