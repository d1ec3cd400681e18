"""The density picture and its CNN: texture gone, position kept, the 8 wafer symmetries respected."""

import numpy as np
import pytest
import torch

from waferflow.patterns.density import (
    DensityNet,
    density_picture,
    fit_density_net,
    line_kernels,
    line_response,
    predict_density,
    symmetry,
)


def _wafer(n: int = 64) -> np.ndarray:
    yy, xx = np.indices((n, n))
    return np.where(np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2) < n / 2 - 1, 1, 0).astype(np.uint8)


def _centre_blob(rng: np.random.Generator, background: float = 0.05) -> np.ndarray:
    grid = _wafer()
    on = grid > 0
    grid[on & (rng.random(grid.shape) < background)] = 2
    cy, cx = 32 + rng.integers(-3, 4, 2)
    grid[cy - 7 : cy + 7, cx - 7 : cx + 7][grid[cy - 7 : cy + 7, cx - 7 : cx + 7] > 0] = 2
    return grid


def _speckled(rng: np.random.Generator, rate: float) -> np.ndarray:
    grid = _wafer()
    grid[(grid > 0) & (rng.random(grid.shape) < rate)] = 2
    return grid


def test_the_picture_keeps_where_fails_lie_and_drops_the_background():
    rng = np.random.default_rng(0)
    blob, heavy = density_picture(np.stack([_centre_blob(rng), _speckled(rng, 0.3)]))
    assert blob.shape == heavy.shape == (4, 32, 32)
    relative, density, mask, radius = blob
    assert relative[16, 16] > 0.5 and density[16, 16] > 0.9  # the blob, far above the wafer's rate
    assert relative[16, 3] < 0  # the wafer's background, below its own rate
    assert relative[0, 0] == density[0, 0] == mask[0, 0] == radius[0, 0] == 0  # off the wafer
    assert mask[16, 16] == 1 and radius[16, 16] < 0.1 < radius[16, 3]
    # a heavy uniform background (30 % of the dies) reads as ~0 after its own rate is taken off
    on = heavy[2] == 1
    assert abs(heavy[0][on].mean()) < 0.05 and heavy[1][on].mean() == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize("lines", [False, True])
def test_the_picture_turns_with_the_wafer(lines):
    rng = np.random.default_rng(1)
    grid = _centre_blob(rng)
    grid[5:12, 20:40][grid[5:12, 20:40] > 0] = 2  # an off-centre band, so turning changes the map
    _scratch(grid, (40, 8), (56, 40))  # and a one-die line at neither 0 nor 45 degrees
    x = density_picture(grid[None], lines=lines)
    assert x.shape == (1, 6 if lines else 4, 32, 32)
    for k in range(1, 4):
        turned = density_picture(np.rot90(grid, k)[None].copy(), lines=lines)
        np.testing.assert_allclose(turned, np.rot90(x, k, axes=(2, 3)), atol=1e-5)
    np.testing.assert_allclose(density_picture(grid[None, :, ::-1].copy(), lines=lines), x[..., ::-1], atol=1e-5)


def _scratch(grid: np.ndarray, start: tuple[int, int], end: tuple[int, int]) -> list[tuple[int, int]]:
    """Fail a one-die-wide straight line from ``start`` to ``end`` (row, column) where there are dies."""
    steps = max(abs(end[0] - start[0]), abs(end[1] - start[1]))
    at = [
        (round(start[0] + (end[0] - start[0]) * t / steps), round(start[1] + (end[1] - start[1]) * t / steps))
        for t in range(steps + 1)
    ]
    dies = [(r, c) for r, c in sorted(set(at)) if grid[r, c] > 0]
    for r, c in dies:
        grid[r, c] = 2
    return dies


def test_the_line_kernels_are_the_wafers_own_symmetries():
    kernels = line_kernels()
    assert kernels.shape == (8, 7, 7) and kernels[:, 3, 3].all()  # each through the centre die
    assert sorted(kernels.sum((1, 2))) == [5, 5, 7, 7, 7, 7, 7, 7]  # the diagonals round two steps to one die
    as_set = {k.tobytes() for k in kernels}
    for k in kernels:  # each turned or mirrored segment is again one of the segments
        assert np.rot90(k).tobytes() in as_set and k[:, ::-1].copy().tobytes() in as_set


@pytest.mark.parametrize("end", [(14, 54), (44, 52)])  # along a segment's direction, and between two (~35 degrees)
def test_a_one_die_scratch_stands_out_in_the_line_channels_and_not_in_the_smoothed_ones(end):
    """A scratch one die wide in a 10 % speckle: the line response reads high along it (1 where a
    segment lies along it) and about the background elsewhere; after pooling, the line channel
    holds it well above the finer density, and that above the picture's smoothed density."""
    rng = np.random.default_rng(4)
    grid = _speckled(rng, 0.1)
    line = _scratch(grid, (14, 10), end)
    fails, mask = (grid == 2).astype(np.float32)[None], (grid > 0).astype(np.float32)[None]
    response = line_response(fails, mask)[0]
    on = np.array([response[r, c] for r, c in line[3:-3]])
    off = np.ones(grid.shape, bool)
    for r, c in line:
        off[max(r - 4, 0) : r + 5, max(c - 4, 0) : c + 5] = False
    off &= grid == 1
    assert np.median(response[off]) < 0.35  # a pass die among 10 % fails: its best segment holds one or two
    assert np.median(on) > 0.55
    if end[0] == 14:  # horizontal: one segment lies on it everywhere
        assert on.min() == 1
    assert not response[grid == 0].any()  # off the wafer
    x = density_picture(grid[None], lines=True)[0]
    cells = sorted({(r // 2, c // 2) for r, c in line[3:-3]})
    relative, fine, lines = (np.median([x[ch][cell] for cell in cells]) for ch in (0, 4, 5))
    assert lines > fine + 0.15 and fine > relative + 0.1 and relative < 0.3  # smoothing thins the line out


def test_impossible_sizes_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        density_picture(np.ones((1, 30, 30), np.uint8))


def test_predictions_are_the_same_for_every_symmetry_of_a_wafer():
    torch.manual_seed(0)
    net = DensityNet(width=4).eval()
    rng = np.random.default_rng(2)
    x = density_picture(np.stack([_centre_blob(rng), _speckled(rng, 0.1)]))
    base = predict_density(net, x)
    assert base.shape == (2, 9) and np.allclose(base.sum(1), 1, atol=1e-5)
    for k in range(8):
        np.testing.assert_allclose(predict_density(net, symmetry(torch.from_numpy(x), k).numpy()), base, atol=1e-5)


def test_it_learns_a_centre_blob_from_a_speckled_wafer():
    rng = np.random.default_rng(3)
    grids = [_centre_blob(rng) for _ in range(48)] + [_speckled(rng, rng.uniform(0.02, 0.2)) for _ in range(48)]
    y = np.array([0] * 48 + [8] * 48)
    net = fit_density_net(density_picture(np.stack(grids)), y, seed=0, epochs=12, width=8, batch=16)
    test = [_centre_blob(rng) for _ in range(10)] + [_speckled(rng, rng.uniform(0.02, 0.2)) for _ in range(10)]
    probs = predict_density(net, density_picture(np.stack(test)))
    assert (probs.argmax(1) == np.array([0] * 10 + [8] * 10)).mean() >= 0.9


def test_the_onnx_ensemble_is_the_mean_of_its_nets_over_the_symmetries():
    """One graph of flips and a transpose gives what predict_density gives with rotations."""
    import onnxruntime as ort

    from waferflow.patterns.density import DensityEnsemble, density_to_onnx

    torch.manual_seed(0)
    nets = [DensityNet(4).eval(), DensityNet(4).eval()]
    x = np.random.default_rng(0).normal(size=(6, 4, 16, 16)).astype(np.float32)
    session = ort.InferenceSession(
        density_to_onnx(DensityEnsemble(nets), 4, (16, 16)), providers=["CPUExecutionProvider"]
    )
    got = session.run(["probabilities"], {"pictures": x})[0]
    expected = np.mean([predict_density(net, x) for net in nets], 0)
    assert got.shape == (6, 9) and np.abs(got - expected).max() < 1e-5
    turned = session.run(["probabilities"], {"pictures": np.ascontiguousarray(np.rot90(x, 1, (2, 3)))})[0]
    assert np.abs(turned - got).max() < 1e-5  # a turned wafer is the same wafer
    # the batch is dynamic: one wafer alone gets what it got among six
    assert np.abs(session.run(["probabilities"], {"pictures": x[2:3]})[0] - got[2:3]).max() < 1e-6


def test_the_picture_takes_a_rectangular_size():
    grid = np.ones((1, 64, 32), np.uint8)
    grid[0, :8] = 2
    x = density_picture(grid, out=(32, 16))
    assert x.shape == (1, 4, 32, 16) and x[0, 1, :4].min() > 0.5 and x[0, 1, 8:].max() < 0.1
    assert density_picture(grid[:0], out=(32, 16)).shape == (0, 4, 32, 16)
    assert density_picture(grid[:0], out=(32, 16), lines=True).shape == (0, 6, 32, 16)
    assert density_picture(grid, out=(32, 16), lines=True).shape == (1, 6, 32, 16)


def test_the_patterns_stage_serves_the_cnn_it_fitted_and_drops_it_when_unset(tiny_project, tmp_path):
    """The stage writes density.onnx with its parity and figures, names it in patterns.json, and a
    rerun without ``patterns.density_cnn`` leaves no stale CNN behind for the engine to load."""
    import json
    import shutil

    from waferflow.config import load_params
    from waferflow.layout import Layout
    from waferflow.patterns.trees import PatternClassifier
    from waferflow.stages import stage

    summary = json.loads((tiny_project / "metrics/patterns.json").read_text())["density_cnn"]
    assert summary["parity"]["passed"] and summary["parity"]["wafers"] > 50 and summary["picture"] == [16, 16]
    assert summary["seeds"] == 2 and summary["fitted_on"] > 200 and 0 <= summary["generated_test"]["macro_f1"] <= 1
    served = PatternClassifier.from_dir(tiny_project / "data/patterns")
    assert served.density_path.is_file() and served.density_weight == 0.2

    root = tmp_path / "off"
    shutil.copytree(tiny_project / "data", root / "data")
    (root / "metrics").mkdir()
    params = load_params(tiny_project / "params.yaml")
    params = params.model_copy(update={"patterns": params.patterns.model_copy(update={"density_cnn": None})})
    summary = stage("patterns").run(params, Layout(root), progress=False).values
    assert "density_cnn" not in summary and not (root / "data/patterns/density.onnx").exists()
    assert PatternClassifier.from_dir(root / "data/patterns").density_session is None
