"""A physically plausible, parametric generator of WM-811K-style wafer maps with per-die masks.

Geometry: a wafer of ``diameter`` dies across; dies are rectangular, so the grid is
``rows x cols`` with ``rows / cols`` = die width / die height (non-square grids). A die is on
the wafer when its centre lies inside the usable radius (edge exclusion); some layouts carry a
flat. Patterns are drawn in normalised wafer coordinates (the usable disc has radius 1), so the
same pattern parameters mean the same physical defect on any grid.

Fails come from two independent processes: background fails and the pattern's fail-intensity
field, which is zero outside the pattern's support. The background is made to look like the
background of real WM-811K maps, which carry 3-14 % fails with no pattern at all: a rate drawn
per wafer from sparse to heavy, rising towards the rim (edge dies fail more), modulated by a
smooth random field (uneven, patchy), with fails that spread to neighbours (pairs and small
blocks rather than single dies). Domain randomisation: every range is wide enough that a real
map is one more draw from the generator (``benchmarks/sim_to_real.py`` measures how far). The
per-die mask marks the fail dies inside the support, so ``mask > 0`` implies the die fails, for
every class, and no pattern fail lies outside the mask.

Classes (WM-811K): Center, Donut, Edge-Loc, Edge-Ring, Loc, Near-full, Random, Scratch, none.
Ring, donut and edge patterns may be partial arcs; scratches are straight or curved (quadratic
Bezier) with gaps; blobs have irregular boundaries; an optional second pattern can be mixed in.
A pattern is redrawn until it stands out of the background (``min_pattern_contrast``): one an
engineer could not see is no label on real maps.

Example:
    >>> gen = WaferGenerator(seed=0)
    >>> rec = gen.make("Donut", index=3)
    >>> rec.die_grid.dtype, rec.label
    (dtype('uint8'), 'Donut')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage

from waferflow.classes import CLASSES, DIE_FAIL, DIE_NONE, DIE_PASS, NONE_CLASS, class_index, mask_index
from waferflow.data.records import WaferRecord

__all__ = ["GeneratorConfig", "WaferLayout", "WaferGenerator", "PatternField"]


class GeneratorConfig(BaseModel):
    """Ranges the generator samples from (all documented in ``params.yaml``).

    Args:
        diameter_range: Wafer diameter in dies, sampled log-uniformly (WM-811K: ~15 to ~200).
        aspect_range: Die aspect (rows/cols of the grid), sampled log-uniformly.
        edge_exclusion_range: Usable radius is ``1 - edge_exclusion`` (normalised).
        flat_probability: Share of layouts with a wafer flat.
        margin_max: Up to this many empty rows/columns around the wafer, per side.
        background_fail_range: Background fail rate, sampled log-uniformly per wafer. Real
            WM-811K wafers carry 3-14 % fails with no pattern at all (10th-90th percentile of
            its ``none`` maps), so the range reaches well past that.
        background_edge_boost_range: The background rises towards the rim by a factor up to
            ``1 + boost`` (boost sampled uniformly per wafer): edge dies fail more on real
            wafers, pattern or not (WM-811K ``none`` maps hold ~47 % of their fails in the outer
            20 % of the radius, 36 % of the area).
        background_patchiness_range: Standard deviation (log scale) of a smooth random field
            that modulates the background rate across the wafer: real backgrounds are uneven.
        background_clump_probability: Range of the per-wafer chance that a background fail
            spreads to its neighbouring dies and runs on along its row or column: real
            background fails come in pairs, small blocks and short bars, not as single dies.
        background_cluster_probability: Share of wafers with a few faint fail clusters in the
            background (not a pattern: too sparse to label).
        mixed_probability: Share of patterned wafers given a second, different pattern (the
            wafer keeps the first label; the mask holds both).
        min_pattern_dies: A patterned wafer is redrawn until its pattern covers at least this
            many fail dies ...
        min_pattern_fraction: ... and at least this share of the wafer's dies (a 3-die pattern
            is visible on a 20-die-wide wafer, not on a 160-die-wide one).
        min_pattern_contrast: ... and its dies fail this much more often than the background
            around and under it (fail rate inside the pattern minus the larger of the fail rate
            outside it and the background's own fails inside it). A pattern drowned in the
            background is not labeled on real maps; drawn anyway, it teaches the model to call
            noise a pattern. Not applied to Random and Near-full, which cover the whole wafer.
        scratch_length_range: Length of a scratch line in wafer radii, sampled uniformly; at
            least 0.8 x the shortest length of it must lie on the wafer.
        scratch_reach: How far out (radius, 1 = the rim) a scratch counts as on the wafer; its
            on-wafer stretch must keep a mean radius of ``reach - 0.05`` or less. Below 1, scratches
            stop short of the rim (WM-811K's often run into it).
        scratch_axis_probability: Share of scratch lines drawn along a die row or column
            (WM-811K's short scratches are often bars along the die grid).
        loc_center_reach: A Loc cluster's middle lies at a radius drawn uniformly from 0.22 to
            this (1 = the rim; a cluster centred on the rim is Edge-Loc). WM-811K labels many
            clusters that touch the rim Loc.
        loc_density_range: Fail probability in the core of a Loc cluster, sampled uniformly
            (WM-811K's Loc clusters are mostly solid).
        loc_elongation: Loc clusters are stretched up to ``exp(elongation)`` : 1 (log-uniform).
        edge_ring_depth_range: How many dies deep an Edge-Ring band reaches in from the rim,
            sampled uniformly (its edge wobbles and is soft).
        edge_ring_density_range: Fail probability inside an Edge-Ring band, sampled uniformly.
        edge_loc_depth_range: How deep (wafer radii; at least 1.1 dies) an Edge-Loc arc reaches in
            from the rim, sampled uniformly (half of the Edge-Loc maps are arcs, half blobs centred
            on the rim).
        edge_loc_span_range: Half the angle (radians) an Edge-Loc arc spans along the rim, sampled
            uniformly (0.8: a quarter of the rim; WM-811K labels thin arcs along one to three sides
            Edge-Loc, full rings Edge-Ring).
        edge_loc_chord_probability: Share of Edge-Loc maps that fail solid beyond a chord: a
            segment of the wafer cut off by a straight line, holding 14-50 % of its area (WM-811K
            labels such half-moons from the rim Edge-Loc; 0 draws the maps of before, bit for bit).
        edge_loc_blob_depth_range: How deep (wafer radii; at least 1.1 dies) an Edge-Loc blob on the
            rim reaches in, sampled uniformly: its middle lies beyond the rim by its radius less
            this. WM-811K's Edge-Loc clusters hug the rim (stop 50: three quarters of their dies in
            the outermost two rings, median on the dev lots). None: middles at 0.92-1.05 of the
            radius, as before, bit for bit.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    diameter_range: tuple[int, int] = (20, 120)
    aspect_range: tuple[float, float] = (0.75, 1.33)
    edge_exclusion_range: tuple[float, float] = (0.0, 0.06)
    flat_probability: float = 0.3
    margin_max: int = 2
    background_fail_range: tuple[float, float] = (0.01, 0.2)
    background_edge_boost_range: tuple[float, float] = (0.0, 8.0)
    background_patchiness_range: tuple[float, float] = (0.0, 0.9)
    background_clump_probability: tuple[float, float] = (0.0, 0.25)
    background_cluster_probability: float = 0.15
    mixed_probability: float = 0.0
    min_pattern_dies: int = 6
    min_pattern_fraction: float = 0.008
    min_pattern_contrast: float = 0.35
    scratch_length_range: tuple[float, float] = (0.5, 1.8)
    scratch_reach: float = Field(0.9, ge=0.5, le=1.0)
    scratch_axis_probability: float = Field(0.0, ge=0.0, le=1.0)
    loc_center_reach: float = Field(0.85, ge=0.3, le=1.0)
    loc_density_range: tuple[float, float] = (0.4, 0.95)
    loc_elongation: float = Field(0.8, ge=0.0, le=2.0)
    edge_ring_depth_range: tuple[float, float] = (1.0, 4.0)
    edge_ring_density_range: tuple[float, float] = (0.55, 1.0)
    edge_loc_depth_range: tuple[float, float] = (0.09, 0.38)
    edge_loc_span_range: tuple[float, float] = (0.15, 0.8)
    edge_loc_chord_probability: float = Field(0.0, ge=0.0, le=1.0)
    edge_loc_blob_depth_range: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _ranges(self) -> "GeneratorConfig":
        shortest, longest = self.scratch_length_range
        if not 0 < shortest <= longest <= 2.0:
            raise ValueError(
                f"scratch_length_range {self.scratch_length_range}: need 0 < shortest <= longest <= 2 radii"
            )
        for name in ("loc_density_range", "edge_ring_density_range"):  # fail probabilities
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(f"{name} {getattr(self, name)}: need 0 < low <= high <= 1")
        for name in ("edge_loc_depth_range", "edge_loc_span_range", "edge_loc_blob_depth_range"):  # radii, radians
            if getattr(self, name) is None:
                continue
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} {getattr(self, name)}: need 0 < low <= high")
        low, high = self.edge_ring_depth_range
        if not 0 < low <= high:
            raise ValueError(f"edge_ring_depth_range {self.edge_ring_depth_range}: need 0 < low <= high dies")
        return self


@dataclass(frozen=True)
class WaferLayout:
    """Die layout of one product: which grid cells hold a die, and their wafer coordinates."""

    product: str
    diameter: int
    aspect: float
    edge_exclusion: float
    flat: tuple[float, float] | None  # (direction angle, depth) or None
    margins: tuple[int, int, int, int]  # top, bottom, left, right
    rows: int = field(init=False)
    cols: int = field(init=False)

    def __post_init__(self) -> None:
        rows = max(3, round(self.diameter * math.sqrt(self.aspect)))
        cols = max(3, round(self.diameter / math.sqrt(self.aspect)))
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "cols", cols)

    @classmethod
    def sample(cls, rng: np.random.Generator, cfg: GeneratorConfig, product: str) -> "WaferLayout":
        lo, hi = cfg.diameter_range
        diameter = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
        a_lo, a_hi = cfg.aspect_range
        aspect = float(math.exp(rng.uniform(math.log(a_lo), math.log(a_hi))))
        flat = None
        if rng.random() < cfg.flat_probability:
            flat = (float(rng.choice([0.5, 1.0, 1.5, 0.0]) * math.pi), float(rng.uniform(0.03, 0.12)))
        margins = tuple(int(m) for m in rng.integers(0, cfg.margin_max + 1, size=4))
        return cls(
            product=product,
            diameter=diameter,
            aspect=aspect,
            edge_exclusion=float(rng.uniform(*cfg.edge_exclusion_range)),
            flat=flat,
            margins=margins,  # type: ignore[arg-type]
        )

    def coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised die-centre coordinates (u right, v down) and the on-wafer mask."""
        top, bottom, left, right = self.margins
        ys = (np.arange(self.rows) + 0.5 - self.rows / 2) / (self.rows / 2)
        xs = (np.arange(self.cols) + 0.5 - self.cols / 2) / (self.cols / 2)
        v, u = np.meshgrid(ys, xs, indexing="ij")
        usable = 1.0 - self.edge_exclusion
        on_wafer = np.hypot(u, v) <= usable
        if self.flat is not None:
            angle, depth = self.flat
            on_wafer &= (u * math.cos(angle) + v * math.sin(angle)) <= usable - depth
        # Scale so the usable disc has radius 1: patterns are defined on it.
        u, v = u / usable, v / usable
        pad = ((top, bottom), (left, right))
        return np.pad(u, pad, mode="edge"), np.pad(v, pad, mode="edge"), np.pad(on_wafer, pad)


@dataclass
class PatternField:
    """A pattern's fail intensity per die (0..1) and its support (where it may be labeled)."""

    intensity: np.ndarray
    support: np.ndarray


def _wobble(rng: np.random.Generator, theta: np.ndarray, amount: float) -> np.ndarray:
    """Low-frequency angular noise so blob and ring boundaries are irregular, not circles."""
    out = np.ones_like(theta)
    for k in range(2, 6):
        out += rng.uniform(0, amount) * np.cos(k * theta + rng.uniform(0, 2 * math.pi)) / (k - 1)
    return out


def _soft_inside(distance: np.ndarray, radius: np.ndarray | float, softness: float) -> np.ndarray:
    """1 well inside ``radius``, 0 well outside, a logistic ramp of width ``softness`` between."""
    return 1.0 / (1.0 + np.exp(np.clip((distance - radius) / max(softness, 1e-3), -30, 30)))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std random field varying over ``sigma`` cells (Gaussian-filtered noise)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / max(float(field.std()), 1e-9)


def _clumped_fails(rng: np.random.Generator, rate: np.ndarray, clump: float) -> np.ndarray:
    """Draw fails at ``rate`` per die, where each fail spreads to each of its 4 neighbours with
    chance ``clump / 4`` (pairs and small blocks) and, with chance ``clump``, runs on along its
    row or column for 1-3 more dies (each further die with chance 1/2): real background fails
    come as short bars of 2-4 dies (adjacent dies share a probe touchdown), which are not
    scratches. The seed rate is lowered so the expected fail share stays near ``rate``."""
    seeds = rng.random(rate.shape) < rate / (1.0 + 2.75 * clump)
    if clump <= 0:
        return seeds
    neighbours = ndimage.binary_dilation(seeds, structure=ndimage.generate_binary_structure(2, 1)) & ~seeds
    fails = seeds | (neighbours & (rng.random(rate.shape) < clump / 4))
    runs = seeds & (rng.random(rate.shape) < clump)
    along_rows = rng.random(rate.shape) < 0.5
    rows, cols = rate.shape
    for step in range(1, 4):
        fails[:, step:] |= (runs & along_rows)[:, : cols - step]
        fails[step:, :] |= (runs & ~along_rows)[: rows - step, :]
        runs = runs & (rng.random(rate.shape) < 0.5)
    return fails


def _arc_window(
    rng: np.random.Generator, theta: np.ndarray, full_probability: float, coverage: tuple[float, float]
) -> np.ndarray:
    """1 on an angular arc (full circle with ``full_probability``), soft at its two ends."""
    if rng.random() < full_probability:
        return np.ones_like(theta)
    span = rng.uniform(*coverage) * 2 * math.pi
    start = rng.uniform(0, 2 * math.pi)
    rel = np.mod(theta - start, 2 * math.pi)
    return _soft_inside(np.abs(rel - span / 2), span / 2, 0.08)


class _Patterns:
    def __init__(self, config: GeneratorConfig | None = None) -> None:
        self.config = config or GeneratorConfig()

    """One method per class: ``(rng, u, v, diameter) -> PatternField``."""

    @staticmethod
    def _blob(rng, u, v, cx, cy, radius, density, irregularity=0.15, elongation=0.35):
        aspect = math.exp(rng.uniform(-elongation, elongation))
        rot = rng.uniform(0, math.pi)
        du, dv = u - cx, v - cy
        pu = du * math.cos(rot) + dv * math.sin(rot)
        pv = -du * math.sin(rot) + dv * math.cos(rot)
        dist = np.hypot(pu * math.sqrt(aspect), pv / math.sqrt(aspect))
        theta = np.arctan2(pv, pu)
        r_theta = radius * _wobble(rng, theta, irregularity)
        softness = radius * rng.uniform(0.05, 0.35)
        profile = _soft_inside(dist, r_theta, softness)
        # Dense core fading outwards, as process defects usually do.
        falloff = 1.0 - rng.uniform(0.0, 0.5) * np.clip(dist / np.maximum(r_theta, 1e-6), 0, 1)
        return PatternField(density * profile * falloff, profile > 0.5)

    def center(self, rng, u, v, diameter):
        off_r, off_t = rng.uniform(0, 0.12), rng.uniform(0, 2 * math.pi)
        radius = max(rng.uniform(0.07, 0.6), 3.0 / diameter)  # at least ~1.5 dies; up to a filled disc
        return self._blob(rng, u, v, off_r * math.cos(off_t), off_r * math.sin(off_t), radius, rng.uniform(0.45, 1.0))

    def loc(self, rng, u, v, diameter):
        # Off the centre (else Center); anywhere out to the rim, which it may touch as long as
        # its middle stays inside the wafer (a cluster centred on the rim is Edge-Loc). Real Loc
        # clusters are large: on the dev lots the largest cluster holds 2.3 % of the dies (median;
        # 1.0 % on radii 0.05-0.24 before), and elongated.
        cfg = self.config
        radius = max(math.exp(rng.uniform(math.log(0.07), math.log(0.38))), 3.0 / diameter)
        r_c, t_c = rng.uniform(0.22, cfg.loc_center_reach), rng.uniform(0, 2 * math.pi)
        field = self._blob(
            rng,
            u,
            v,
            r_c * math.cos(t_c),
            r_c * math.sin(t_c),
            radius,
            rng.uniform(*cfg.loc_density_range),
            irregularity=0.3,
            elongation=cfg.loc_elongation,
        )
        if rng.random() < 0.25:  # a satellite blob next to the main one
            r2 = rng.uniform(0.05, 0.15)
            t2 = rng.uniform(0, 2 * math.pi)
            sat = self._blob(
                rng,
                u,
                v,
                r_c * math.cos(t_c) + 2 * r2 * math.cos(t2),
                r_c * math.sin(t_c) + 2 * r2 * math.sin(t2),
                r2,
                rng.uniform(0.5, 0.95),
            )
            field = PatternField(np.maximum(field.intensity, sat.intensity), field.support | sat.support)
        return field

    def donut(self, rng, u, v, diameter):
        off_r, off_t = rng.uniform(0, 0.1), rng.uniform(0, 2 * math.pi)
        du, dv = u - off_r * math.cos(off_t), v - off_r * math.sin(off_t)
        r, theta = np.hypot(du, dv), np.arctan2(dv, du)
        half_width = max(rng.uniform(0.06, 0.28), 1.2 / diameter)
        # The hole stays open (inner edge >= 0.16 and >= 2 dies): a filled disc is Center.
        r0 = rng.uniform(half_width + max(0.16, 4.0 / diameter), max(0.7, half_width + 0.25))
        ring = _soft_inside(np.abs(r - r0 * _wobble(rng, theta, 0.08)), half_width, half_width * 0.25)
        arc = _arc_window(rng, theta, 0.6, (0.55, 0.92))
        field = ring * arc
        return PatternField(rng.uniform(0.5, 0.95) * field, field > 0.5)

    def edge_ring(self, rng, u, v, diameter):
        cfg = self.config
        r, theta = np.hypot(u, v), np.arctan2(v, u)
        width = min(rng.uniform(*cfg.edge_ring_depth_range) * 2.0 / diameter, 0.18)  # dies deep
        band = _soft_inside(1.0 - r, width * _wobble(rng, theta, 0.25), width * 0.2)
        arc = _arc_window(rng, theta, 0.5, (0.5, 0.92))
        field = band * arc
        return PatternField(rng.uniform(*cfg.edge_ring_density_range) * field, field > 0.5)

    def edge_loc(self, rng, u, v, diameter):
        cfg = self.config
        r, theta = np.hypot(u, v), np.arctan2(v, u)
        t0 = rng.uniform(-math.pi, math.pi)
        if cfg.edge_loc_chord_probability > 0 and rng.random() < cfg.edge_loc_chord_probability:
            # A segment beyond a chord c from the centre (c 0.6 -> 14 % of the area, 0 -> half), its
            # edge a little bent; solid, as WM-811K's large Edge-Loc half-moons are.
            across = u * math.cos(t0) + v * math.sin(t0)
            along = -u * math.sin(t0) + v * math.cos(t0)
            bend = rng.uniform(-0.15, 0.15) * along**2
            field = _soft_inside(rng.uniform(0.0, 0.6) + bend, across, 0.04)
            return PatternField(rng.uniform(0.7, 1.0) * field, field > 0.5)
        if rng.random() < 0.5:
            # An arc segment hugging the edge (deeper than thin: real Edge-Loc clusters hold 2.5 % of
            # the dies, median on the dev lots, twice what depths of 0.07-0.3 gave).
            depth = max(rng.uniform(*cfg.edge_loc_depth_range), 2.2 / diameter)
            half_span = rng.uniform(*cfg.edge_loc_span_range)
            dtheta = np.abs(np.angle(np.exp(1j * (theta - t0))))
            field = _soft_inside(1.0 - r, depth * _wobble(rng, theta, 0.3), depth * 0.25)
            field = field * _soft_inside(dtheta, half_span, 0.1)
            return PatternField(rng.uniform(0.35, 0.95) * field, field > 0.5)
        # A blob centred on the rim (a cluster whose middle is inside the wafer is Loc).
        if cfg.edge_loc_blob_depth_range is None:
            rc, radius = rng.uniform(0.92, 1.05), rng.uniform(0.12, 0.4)
        else:  # its middle beyond the rim, so that it reaches in only so deep
            radius = rng.uniform(0.12, 0.4)
            depth = min(max(rng.uniform(*cfg.edge_loc_blob_depth_range), 2.2 / diameter), radius)
            rc = 1.0 + radius - depth
        return self._blob(
            rng, u, v, rc * math.cos(t0), rc * math.sin(t0), radius, rng.uniform(0.35, 0.95), irregularity=0.3
        )

    def near_full(self, rng, u, v, diameter):
        density = rng.uniform(0.75, 1.0)
        if rng.random() < 0.3:
            # Most of the wafer failing solid, one side still passing (a half-plane cut).
            t = rng.uniform(0, 2 * math.pi)
            cut = _soft_inside(u * math.cos(t) + v * math.sin(t), rng.uniform(0.2, 0.7), 0.05)
            return PatternField(density * cut, cut > 0.5)
        intensity = np.full(u.shape, density)
        if rng.random() < 0.5:  # a few surviving pass islands
            for _ in range(rng.integers(1, 4)):
                cx, cy = rng.uniform(-0.7, 0.7, size=2)
                hole = _soft_inside(np.hypot(u - cx, v - cy), rng.uniform(0.05, 0.2), 0.03)
                intensity *= 1 - hole
        return PatternField(intensity, np.ones(u.shape, bool))

    def random(self, rng, u, v, diameter):
        density = rng.uniform(0.2, 0.65)
        # Random fails on real wafers are dense and uneven: patches and blocks, not even speckle.
        gu, gv = rng.normal(0, 0.25, size=2)
        radial = rng.uniform(-0.5, 0.6) * (1.0 - np.clip(np.hypot(u, v), 0.0, 1.0))
        patches = _smooth_field(rng, u.shape, rng.uniform(1.0, 4.0)) * rng.uniform(0.0, 0.35)
        intensity = np.clip(density * (1 + gu * u + gv * v + radial) + patches, 0.03, 1.0)
        return PatternField(intensity, np.ones(u.shape, bool))

    def scratch(self, rng, u, v, diameter):
        # One scratch, sometimes two or three (a handling scratch often crosses the wafer more than once).
        line = np.zeros(u.shape, bool)
        for _ in range(int(rng.choice([1, 2, 3], p=[0.75, 0.2, 0.05]))):
            line |= self._scratch_line(rng, u, v, diameter)
        # Short gaps along the scratch: real scratches are mostly continuous.
        dashes = rng.random(u.shape) < rng.uniform(0.85, 1.0)
        density = rng.uniform(0.85, 1.0)
        return PatternField(density * (line & dashes), line)

    def _scratch_line(self, rng, u, v, diameter) -> np.ndarray:
        # Quadratic Bezier: straight when the control point sits on the chord, curved otherwise.
        # Redrawn until a real stretch of it (>= 0.8 x the shortest length: 0.4 wafer radii by
        # default) lies on the wafer: a stub clipped by the rim would look like Edge-Loc.
        cfg = self.config
        shortest, longest = cfg.scratch_length_range
        mean_reach = round(cfg.scratch_reach - 0.05, 6)  # rounded: 0.9 - 0.05 is not 0.85 in floats
        for _ in range(50):
            length = rng.uniform(shortest, longest)
            t0 = rng.uniform(0, 2 * math.pi)
            start_r = rng.uniform(0.0, 0.9)
            p0 = np.array([start_r * math.cos(t0), start_r * math.sin(t0)])
            if cfg.scratch_axis_probability > 0 and rng.random() < cfg.scratch_axis_probability:
                direction = int(rng.integers(4)) * math.pi / 2  # along a die row or column
            else:
                direction = rng.uniform(0, 2 * math.pi)
            p2 = p0 + length * np.array([math.cos(direction), math.sin(direction)])
            bend = rng.choice([0.0, rng.uniform(-0.35, 0.35)], p=[0.4, 0.6])
            normal = np.array([-math.sin(direction), math.cos(direction)])
            p1 = (p0 + p2) / 2 + bend * length * normal
            n_pts = max(50, int(length * diameter * 3))
            t = np.linspace(0, 1, n_pts)[:, None]
            curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
            radius = np.hypot(curve[:, 0], curve[:, 1])
            visible = radius <= cfg.scratch_reach
            # ... and not one hugging the rim, which an engineer would call Edge-Loc.
            if visible.mean() * length >= 0.8 * shortest and radius[visible].mean() <= mean_reach:
                break
        # Rasterise onto the die grid, then measure distance in dies with an exact EDT.
        rows, cols = u.shape
        su = (u[0, -1] - u[0, 0]) / max(cols - 1, 1)
        sv = (v[-1, 0] - v[0, 0]) / max(rows - 1, 1)
        ci = np.round((curve[:, 1] - v[0, 0]) / sv).astype(int)
        cj = np.round((curve[:, 0] - u[0, 0]) / su).astype(int)
        keep = (ci >= 0) & (ci < rows) & (cj >= 0) & (cj < cols)
        on_line = np.zeros(u.shape, bool)
        on_line[ci[keep], cj[keep]] = True
        if not on_line.any():
            return on_line
        dist = ndimage.distance_transform_edt(~on_line)
        # A scratch has a physical width: smaller dies (more across the wafer) -> more dies wide.
        width = max(0.5, diameter * rng.uniform(0.006, 0.018))
        return dist <= width

    def dispatch(self) -> dict[str, Callable]:
        return {
            "Center": self.center,
            "Donut": self.donut,
            "Edge-Loc": self.edge_loc,
            "Edge-Ring": self.edge_ring,
            "Loc": self.loc,
            "Near-full": self.near_full,
            "Random": self.random,
            "Scratch": self.scratch,
        }


# Second patterns that plausibly co-occur with a first one (as in MixedWM38's mixtures).
_MIXABLE = {
    "Center": ("Edge-Ring", "Edge-Loc", "Scratch", "Loc"),
    "Donut": ("Edge-Ring", "Edge-Loc", "Scratch", "Loc"),
    "Edge-Loc": ("Center", "Donut", "Scratch", "Loc"),
    "Edge-Ring": ("Center", "Donut", "Scratch", "Loc"),
    "Loc": ("Center", "Donut", "Edge-Ring", "Edge-Loc", "Scratch"),
    "Scratch": ("Center", "Donut", "Edge-Ring", "Edge-Loc", "Loc"),
    "Near-full": (),
    "Random": (),
}


# Patterns that cover the whole wafer: a fail density, not a region that stands out.
_WHOLE_WAFER = ("Near-full", "Random")


def _contrast(fail: np.ndarray, background_fail: np.ndarray, support: np.ndarray, on_wafer: np.ndarray) -> float:
    """How much more often the dies of a pattern fail than the background around and under it."""
    if not support.any():
        return 0.0
    outside = on_wafer & ~support
    around = fail[outside].mean() if outside.any() else 0.0
    return float(fail[support].mean() - max(around, background_fail[support].mean()))


class WaferGenerator:
    """Seeded, deterministic generator: the same (seed, class, index, layout) gives the same map.

    Args:
        seed: Base seed; each map draws from ``np.random.default_rng([seed, class, index])``.
        config: Sampling ranges; see :class:`GeneratorConfig`.
    """

    def __init__(self, seed: int = 0, config: GeneratorConfig | None = None, layout_seed: int | None = None) -> None:
        self.seed = int(seed)
        self.layout_seed = self.seed if layout_seed is None else int(layout_seed)  # whose products :meth:`layout` makes
        self.config = config or GeneratorConfig()
        self._patterns = _Patterns(self.config).dispatch()

    def layout(self, product: str, index: int) -> WaferLayout:
        """The layout of product number ``index`` (deterministic per ``layout_seed``)."""
        rng = np.random.default_rng([self.layout_seed, 1_000_003, index])
        return WaferLayout.sample(rng, self.config, product)

    def _background_rate(self, rng: np.random.Generator, u: np.ndarray, v: np.ndarray, rate: float) -> np.ndarray:
        """Background fail probability per die: ``rate``, rising towards the rim and uneven."""
        cfg = self.config
        edge_width = rng.uniform(0.08, 0.25)
        ramp = np.clip((np.hypot(u, v) - (1.0 - edge_width)) / edge_width, 0.0, 1.0)
        field = rate * (1.0 + rng.uniform(*cfg.background_edge_boost_range) * ramp)
        patchiness = rng.uniform(*cfg.background_patchiness_range)
        if patchiness > 0:
            smooth = _smooth_field(rng, u.shape, rng.uniform(2.0, 8.0))
            field = field * np.exp(patchiness * smooth - patchiness**2 / 2)
        # Capped: a rim failing almost everywhere is an Edge-Ring, not background.
        return np.clip(field, 0.0, 0.45)

    def make(
        self,
        label: str,
        index: int = 0,
        layout: WaferLayout | None = None,
        lot_id: str = "SYN",
        wafer_id: str | None = None,
    ) -> WaferRecord:
        """Generate one wafer of class ``label``."""
        cls = class_index(label)
        rng = np.random.default_rng([self.seed, cls, index])
        if layout is None:
            layout = WaferLayout.sample(rng, self.config, product=f"P-{self.seed}-{cls}-{index}")
        u, v, on_wafer = layout.coordinates()
        cfg = self.config
        lo, hi = cfg.background_fail_range
        bg_rate = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        if label == "Scratch":  # a thin line stays visible only above a moderate background
            bg_rate = min(bg_rate, 0.12)
        background = self._background_rate(rng, u, v, bg_rate)
        clump = rng.uniform(*cfg.background_clump_probability)
        if rng.random() < cfg.background_cluster_probability:
            for _ in range(rng.integers(1, 4)):
                cx, cy = rng.uniform(-0.8, 0.8, size=2)
                # Faint and small: denser clusters would be a Loc pattern, not background.
                background += 0.06 * _soft_inside(np.hypot(u - cx, v - cy), rng.uniform(0.02, 0.05), 0.02)

        patterns = [] if label == NONE_CLASS else [label]
        if patterns and _MIXABLE[label] and rng.random() < cfg.mixed_probability:
            patterns.append(str(rng.choice(_MIXABLE[label])))

        needed = max(cfg.min_pattern_dies, cfg.min_pattern_fraction * on_wafer.sum())
        for _attempt in range(50):
            fields = [self._patterns[p](rng, u, v, layout.diameter) for p in patterns]
            # Pattern fails stay inside the support: the mask's edge is where the defect ends.
            pattern_fail = [rng.random(u.shape) < f.intensity * f.support for f in fields]
            background_fail = _clumped_fails(rng, background, clump) & on_wafer
            fail = background_fail.copy()
            for pf in pattern_fail:
                fail |= pf
            fail &= on_wafer
            mask = np.zeros(u.shape, np.uint8)
            # Later patterns first so the wafer's own class wins where two overlap.
            for p, f in reversed(list(zip(patterns, fields))):
                mask[fail & f.support] = mask_index(p)
            if not patterns:
                break
            if (mask == mask_index(label)).sum() >= needed and (
                label in _WHOLE_WAFER
                or _contrast(fail, background_fail, fields[0].support & on_wafer, on_wafer) >= cfg.min_pattern_contrast
            ):
                break
        else:
            raise RuntimeError(
                f"could not place a visible {label} pattern on a {layout.rows}x{layout.cols} wafer "
                f"after 50 attempts; lower synth.min_pattern_dies or min_pattern_contrast, or raise the diameter range"
            )
        grid = np.where(on_wafer, np.where(fail, DIE_FAIL, DIE_PASS), DIE_NONE).astype(np.uint8)
        return WaferRecord(
            die_grid=grid,
            defect_mask=mask,
            lot_id=lot_id,
            wafer_id=wafer_id if wafer_id is not None else str(index),
            label=label,
            product=layout.product,
            source="synth",
            attrs={
                "patterns": patterns,
                "background_fail_rate": round(bg_rate, 5),
                "diameter": layout.diameter,
                "generator_seed": self.seed,
                "index": index,
            },
        )


assert set(_Patterns().dispatch()) | {NONE_CLASS} == set(CLASSES)
