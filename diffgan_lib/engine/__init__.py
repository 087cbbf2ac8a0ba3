"""Training: the configuration, the run, the step, the one loop, checkpoints (the envelope and the
registry of model kinds), the run folder, torchrun. Imports ``core``, ``data`` and ``sampling``."""
from .checkpoints import CheckpointError
from .config import FewStepConfig, OneCallConfig, TrainConfig
from .fewstep import fewstep_run, fewstep_step, fewstep_train, teacher_record
from .loop import fit, loop
from .onecall import onecall_run, onecall_step, onecall_train
from .models import export_for_sampling, load_checkpoint, load_teacher, read_checkpoint, training_members
from .run import Run, build_run, load_training_state, resume_run, save_checkpoint
from .step import keyed_t_and_noise, train_step
from .train import TrainResult, train

__all__ = ["CheckpointError", "TrainConfig", "FewStepConfig", "OneCallConfig", "onecall_run", "onecall_step", "onecall_train", "fewstep_run", "fewstep_step", "fewstep_train", "teacher_record", "fit", "loop",
           "export_for_sampling", "load_checkpoint", "load_teacher", "read_checkpoint", "training_members", "Run", "build_run",
           "load_training_state", "resume_run", "save_checkpoint", "keyed_t_and_noise", "train_step", "TrainResult",
           "train"]
