"""Plot helpers and the widgets' static twins: right panels, fixed image window, small figures."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffgan_lib import DiffusionScheduler, Discriminator
from diffgan_lib.course import viz, widgets# noqa: E402
from diffgan_lib.core.discriminator import receptive_field
from diffgan_lib.core import score_map_shape# noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _small(fig):
    w, h = fig.get_size_inches()
    return w <= 10.01 and h <= 4.01


def test_show_images_fixed_window_titles_and_size():
    imgs = torch.linspace(-3, 3, 10 * 16).reshape(10, 1, 4, 4)    # values beyond [-1, 1] stay clipped
    fig = viz.show_images(imgs, [f"t = {i}" for i in range(10)], ncols=5, row_labels=["a", "b"])
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 10 and len(shown) == 10 and _small(fig)
    assert all(ax.images[0].get_clim() == (-1.0, 1.0) for ax in shown)
    assert all(ax.images[0].get_cmap().name == "gray" for ax in shown)
    assert shown[3].get_title() == "t = 3" and not shown[3].axison
    with pytest.raises(ValueError, match="one image"):
        viz.show_images([torch.zeros(2, 2, 4, 4)])


def _boxes_overlap(a, b):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("n,ncols,titles", [(6, None, "file {}"), (16, 4, "t = {}\nalpha_hat = 0.5"), (12, 6, "#{} CT")])
def test_show_images_tiles_of_96_px_and_no_overlapping_text(n, ncols, titles):
    fig = viz.show_images(torch.zeros(n, 1, 32, 32), [titles.format(i) for i in range(n)], ncols=ncols,
                          suptitle="a title over the grid", row_labels=["row"] * (n // (ncols or n)))
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    assert all(ax.get_window_extent().width >= 95.5 for ax in fig.axes)          # about 96 screen pixels
    texts = [fig._suptitle] + [ax.title for ax in fig.axes]
    boxes = [t.get_window_extent(r) for t in texts]
    assert not [(i, j) for i in range(len(boxes)) for j in range(i) if _boxes_overlap(boxes[i], boxes[j])]
    images = [ax.get_window_extent() for ax in fig.axes]
    assert not [t for t, b in zip(texts, boxes) for im in images if _boxes_overlap(b, im)]


def test_show_images_outlines_a_mask():
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:9, 5:10] = True
    fig = viz.show_images(torch.zeros(2, 1, 16, 16), outlines=[mask, None])
    assert len(fig.axes[0].collections) == 1 and not fig.axes[1].collections


def test_plot_schedules_three_panels_with_log_snr():
    s = {n: DiffusionScheduler(100, schedule=n, device="cpu") for n in ("linear", "cosine")}
    fig = viz.plot_schedules(s, t_mark=10)
    assert len(fig.axes) == 3 and fig.axes[2].get_yscale() == "log" and _small(fig)
    assert len(fig.axes[1].lines) == 2 + 1     # two schedules and the t marker


def test_receptive_box_agrees_with_the_discriminator():
    convs = [m for m in Discriminator(1, 8).model if isinstance(m, torch.nn.Conv2d)]
    start, stop = viz.receptive_box(convs, 6)
    assert stop - start == receptive_field() == 46
    assert viz.receptive_box(convs, 1)[0] - viz.receptive_box(convs, 0)[0] == 8   # the jump: 2 * 2 * 2
    assert viz.receptive_box([(3, 1, 1)], 0) == (-1, 2)
    fig = viz.draw_receptive_field(torch.zeros(1, 128, 128), convs, (6, 6), score_map_shape(128)[0])
    assert "46 x 46" in fig.axes[0].get_title()


def test_score_maps_share_one_colour_scale():
    scores = torch.tensor([-4.0, 2.0]).view(2, 1, 1, 1).expand(2, 1, 5, 5)
    fig = viz.plot_score_maps(torch.zeros(2, 1, 32, 32), scores, ["a", "b"])
    maps = [ax.images[0] for ax in fig.axes if ax.images and ax.images[0].get_cmap().name == "RdBu"]
    assert len(maps) == 2 and all(m.get_clim() == (-4.0, 4.0) for m in maps)


def test_other_figures_are_small():
    emb = torch.randn(50, 16).clamp(-1, 1)
    for fig in (viz.plot_pipeline(), viz.plot_sinusoids(emb, torch.arange(50), dims=(0, 4)),
                viz.plot_gan_losses(marks={"chance": (0.0, 0.6931)}),
                viz.plot_curves([0, 1], {"a": [1, 2], "b": [2, 1]}, logy=True, hlines={"one": 1.0})):
        assert _small(fig)


def test_static_twins_draw_the_default_state():
    x0 = torch.zeros(1, 32, 32)
    fig = widgets.schedule_explorer_static(x0)
    assert "t = 250" in fig.axes[3].get_title() and _small(fig)
    fig = widgets.d_loss_explorer_static()
    assert "1.3863" in fig.axes[0].get_title() and "at chance" in fig.axes[0].get_title()
    fig = widgets.d_loss_explorer_static(s_real=3.0, s_fake=-3.0)
    assert "D is winning" in fig.axes[0].get_title()


def test_schedule_figure_shows_a_bad_setting_instead_of_raising():
    fig = widgets.draw_schedule(torch.zeros(1, 32, 32), torch.zeros(1, 32, 32), beta_start=0.01, beta_end=0.001)
    assert any("must be larger" in t.get_text() for t in fig.texts)
    fig = widgets.draw_schedule(torch.zeros(1, 32, 32), torch.zeros(1, 32, 32), T=100, t=500)   # t clamped
    assert "t = 99" in fig.axes[3].get_title()


def test_compare_histories_one_panel_per_loss_with_the_chance_line():
    nan = float("nan")
    h = {"step": [1, 2, 3], "diff": [1.0, 0.8, 0.6], "D": [nan, 1.3, 0.2]}
    fig = viz.compare_histories({"a": h, "b": h}, keys=("diff", "D"), window=2)
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "D loss" and _small(fig)
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 3      # two runs, and 2 ln 2


@pytest.mark.parametrize("labels,rotation", [(["corrected, step 230", "as written"], 0.0),
                                             (["corrected\nstep 230", "as written\nstep 230"], 90.0)])
def test_show_images_row_labels_stay_inside_the_figure(labels, rotation):
    fig = viz.show_images(torch.zeros(16, 1, 32, 32), ncols=8, row_labels=labels)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in ax.texts]
    assert [t.get_rotation() for t in texts] == [rotation] * 2
    assert all(t.get_window_extent(r).x0 >= 0 for t in texts)
    assert fig.get_size_inches()[0] <= 10.51
    if rotation:                                                 # short labels leave room for 96 px tiles
        assert all(ax.get_window_extent().width >= 95.5 for ax in fig.axes)
