"""What the loop does after each step besides stepping: each is a callback ``cb(run, metrics, epoch, epoch_ends)``
that may return "stop" to end the run after this step (the run then saves interrupted.pth).

- ``ProgressBar``: the tqdm bar and its text;
- ``Checkpoints``: epoch_XXXX.pth every ``checkpoint_every`` epochs, last.pth every ``save_every`` steps;
- ``SampleGrid``: a grid of the EMA generator's samples every ``sample_every`` steps (for watching training);
- ``UserCallback``: ``callback(info)`` of ``train``, where a KeyboardInterrupt asks for a stop.
Only rank 0 writes files (under torchrun every rank runs the callbacks).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

from ..sampling.samplers import sample_grid
from .step import progress_text

__all__ = ["ProgressBar", "Checkpoints", "SampleGrid", "UserCallback"]


class ProgressBar:
    """Updates ``bar`` every step and its text every ``log_every`` steps ("pure diffusion" when D never trains)."""

    def __init__(self, bar, log_every: int = 1, pure: bool = False):
        self.bar, self.log_every, self.pure = bar, log_every, pure

    def __call__(self, run, metrics, epoch, epoch_ends):
        self.bar.update(1)
        if run.step % self.log_every == 0:
            self.bar.set_postfix_str(f"epoch {epoch} | " + progress_text(metrics, pure=self.pure))


class Checkpoints:
    """epoch_XXXX.pth at every ``checkpoint_every``-th epoch's end, last.pth every ``save_every`` steps;
    only the ``keep_last`` newest epoch files stay (0: all). An epoch file due at the run's last step is
    not written twice: ``link_final`` links it to final_model.pth once that exists.
    ``last_saved`` = (path, step) of the newest file on disk (for the divergence hint)."""

    def __init__(self, rundir, checkpoint_every: int, save_every: int, last_saved=None, last_step=None,
                 keep_last: int = 0):
        self.rundir, self.every_epochs, self.every_steps = rundir, checkpoint_every, save_every
        self.last_saved, self.written, self.last_step, self.keep_last = last_saved, None, last_step, keep_last
        self.at_end = None

    def __call__(self, run, metrics, epoch, epoch_ends):
        names = []
        if epoch_ends and self.every_epochs and (epoch + 1) % self.every_epochs == 0:
            if run.step == self.last_step:
                self.at_end = f"epoch_{epoch + 1:04d}.pth"      # the final file, under a second name
            else:
                names.append(f"epoch_{epoch + 1:04d}.pth")
        if self.every_steps and run.step % self.every_steps == 0:
            names.append("last.pth")
        for name in names:
            path = self.rundir.path / name
            if run.ctx.is_main:
                self.rundir.save(run, name)
                if name.startswith("epoch_"):
                    self._prune()
            self.written = self.last_saved = (path, run.step)

    def link_final(self, final: Path) -> None:
        """Give the final checkpoint the name of the epoch file due at the last step (a hard link, else a copy)."""
        if self.at_end is None or not final.is_file():
            return
        target = self.rundir.path / self.at_end
        target.unlink(missing_ok=True)
        try:
            os.link(final, target)
        except OSError:
            shutil.copy2(final, target)
        self._prune()

    def _prune(self) -> None:
        """Delete all but the ``keep_last`` newest epoch files (none when keep_last is 0)."""
        if self.keep_last:
            for old in sorted(self.rundir.path.glob("epoch_*.pth"))[:-self.keep_last]:
                old.unlink(missing_ok=True)


class SampleGrid:
    """Every ``every`` steps, rank 0 writes 16 fixed-seed samples of the EMA generator to
    ``folder/samples/step_NNNNNN.png``; ``latest`` holds them for the user callback."""

    def __init__(self, folder: Path, every: int, image_size: int):
        self.folder, self.every, self.image_size, self.latest = Path(folder), every, image_size, None

    def __call__(self, run, metrics, epoch, epoch_ends):
        self.latest = None
        if self.every and run.step % self.every == 0 and run.ctx.is_main:
            self.latest = sample_grid(run.G_sample, run.scheduler, self.image_size,
                                      self.folder / "samples" / f"step_{run.step:06d}.png")


class UserCallback:
    """``callback(info)`` after every step: info.step, .epoch, .metrics, .G (EMA), .G_raw, .D, .scheduler,
    .config, .samples (the grid's, or None), .rank, .run. A KeyboardInterrupt it raises stops the run."""

    def __init__(self, callback, grid: SampleGrid | None = None):
        self.callback, self.grid = callback, grid

    def __call__(self, run, metrics, epoch, epoch_ends):
        info = SimpleNamespace(step=run.step, epoch=epoch, metrics=metrics, G=run.G_sample, G_raw=run.G, D=run.D,
                               scheduler=run.scheduler, config=run.config, rank=run.ctx.rank, run=run,
                               samples=self.grid.latest if self.grid is not None else None)
        try:
            self.callback(info)
        except KeyboardInterrupt:
            return "stop"
