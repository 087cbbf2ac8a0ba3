"""What the notebooks share: the shipped models and results, figures, widgets, the seed's loop as
written, and the checked exercises (``diffgan_lib.course.exercises``). The top floor of the library."""
from .helpers import (PRETRAINED, PRETRAINED_COND_PHANTOMS, PRETRAINED_COND_XRAY, PRETRAINED_DIR, PRETRAINED_ONECALL_XRAY,
                      PRETRAINED_ONECALL_PHANTOMS,
                      PRETRAINED_FLOW_XRAY, PRETRAINED_PURE, PRETRAINED_XRAY,
                      PRETRAINED_XRAY_FEATURES, RECIPES, RESULTS_DIR,
                      ensure_checkpoint, load_results, make_pretrained, quick_config)

__all__ = ["PRETRAINED", "PRETRAINED_PURE", "PRETRAINED_FLOW_XRAY", "PRETRAINED_ONECALL_XRAY", "PRETRAINED_ONECALL_PHANTOMS",
           "PRETRAINED_XRAY", "PRETRAINED_COND_PHANTOMS",
           "PRETRAINED_COND_XRAY", "PRETRAINED_XRAY_FEATURES", "PRETRAINED_DIR", "RECIPES", "RESULTS_DIR",
           "ensure_checkpoint", "load_results", "make_pretrained", "quick_config"]
