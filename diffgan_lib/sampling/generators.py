"""The samplers of fine-tuned generators, which make an image in a handful of network calls:
``FewStep`` (a few-step generator's own K levels, ``core.fewstep``) and ``OneCall`` (a one-call generator,
optionally finished by its teacher's DDIM, ``core.onecall``)."""
from __future__ import annotations

import torch

from ..core.fewstep import FewStepGenerator, posterior_sample
from ..core.onecall import REFINE_T
from .chains import DDIM, draw_noise

__all__ = ["FewStep", "OneCall"]


class FewStep:
    """A few-step generator's own levels: x̂0 = G(x_t, k), then the next level from q(. | x_t, x̂0);
    the last level outputs x̂0. K network calls."""

    def __init__(self, G: FewStepGenerator):
        self.G = G

    def evaluations(self) -> int:
        return self.G.n_levels

    @torch.inference_mode()
    def sample(self, model: FewStepGenerator, x_T: torch.Tensor, generator=None, record=None, bar=None):
        x, levels = x_T, model.levels
        for level in range(model.n_levels):
            x0_hat = model(x, torch.full((x.shape[0],), level, dtype=torch.long, device=x.device))
            if level == model.n_levels - 1:
                x = x0_hat
            else:
                noise = draw_noise(x.shape, generator, x.device)
                x = posterior_sample(model.scheduler, x, x0_hat, levels[level], levels[level + 1], noise)
            if bar is not None:
                bar.update(1)
        return x


class OneCall:
    """A one-call generator: G(x_T), x_T the latent z ~ N(0, I); one network call. With a ``teacher`` UNet and
    ``calls`` k >= 2: G(z) re-noised to ``t_finish`` (default ``REFINE_T``; noise from the generator), then the
    teacher's DDIM (eta 0, x̂0 clipped) over k - 1 evenly spaced levels from there to 0 (``core.onecall``):
    k network calls."""

    def __init__(self, G, teacher=None, calls: int = 1, t_finish: int = REFINE_T):
        if not isinstance(calls, int) or isinstance(calls, bool) or calls < 1:
            raise ValueError(f"steps={calls!r}: a one-call generator's network calls per image, an int >= 1")
        if calls > 1 and teacher is None:
            raise ValueError(f"steps={calls}: a one-call generator makes an image in one call; more calls need its "
                             "teacher to finish the image (pass teacher=, e.g. load_teacher(checkpoint)), or leave "
                             "steps out")
        if calls > t_finish + 1:
            raise ValueError(f"steps={calls}: a one-call image is finished by its teacher from t = {t_finish} down to 0, "
                             f"so at most {t_finish + 1} calls")
        self.G, self.teacher, self.calls, self.t_finish = G, teacher, calls, t_finish

    def evaluations(self) -> int:
        return self.calls

    @torch.inference_mode()
    def sample(self, model, x_T: torch.Tensor, generator=None, record=None, bar=None) -> torch.Tensor:
        x = model(x_T)
        if bar is not None:
            bar.update(1)
        if self.calls == 1:
            return x
        sched, teacher = model.scheduler, self.teacher.to(x.device)
        ts = torch.linspace(self.t_finish, 0, self.calls).round().long().tolist()[:self.calls - 1]
        x, _ = sched.add_noise(x, torch.full((len(x),), self.t_finish, device=x.device),
                               draw_noise(x.shape, generator, x.device))
        was_training = teacher.training
        teacher.eval()
        try:
            return DDIM(sched, eta=0.0, clip_x0=True, timesteps=ts).sample(teacher, x, generator, bar=bar)
        finally:
            teacher.train(was_training)
