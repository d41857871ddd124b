"""The course's plot style and the roofline plot.

    use_course_style()                                   # once, at the top of a notebook
    roofline([RooflinePoint("my GEMV", flops, bytes, seconds)], calibrate())

A roofline puts a kernel at (arithmetic intensity, achieved FLOP/s) under two measured
ceilings: bandwidth x intensity (the slope) and the matmul rate (the flat roof). Where
they meet is the ridge point; a kernel left of it is memory-bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from llmopt.device import Calibration, calibrate

# Colour-blind-safe (Okabe-Ito); the first is the student's own result in every plot.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")

COURSE_STYLE = {
    "figure.figsize": (7.0, 4.2),
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linestyle": "-",
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 6,
}


def use_course_style() -> None:
    """Apply the course's matplotlib style to every later plot in this process."""
    plt.rcParams.update(COURSE_STYLE)


@dataclass(frozen=True)
class RooflinePoint:
    label: str
    flops: float  # per call
    bytes_moved: float  # per call, read + written
    seconds: float  # per call, measured (e.g. `measure(fn).median_s`)

    @property
    def intensity(self) -> float:  # FLOPs per byte
        return self.flops / self.bytes_moved

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.seconds


def roofline(points: Sequence[RooflinePoint], calibration: Calibration | None = None, *,
             dtypes: Sequence[torch.dtype] = (torch.float32, torch.bfloat16),
             ax: plt.Axes | None = None, title: str | None = None) -> plt.Axes:
    """Plot measured points under this device's calibrated ceilings (log-log axes).

    Each point is annotated with its fraction of the (first dtype's) roof at its
    intensity, the number a performance check compares with a threshold. A point can
    sit above the slope: data that fits in a cache moves faster than the DRAM copy
    bandwidth that the slope stands for.
    """
    calibration = calibration or calibrate()
    if ax is None:
        _, ax = plt.subplots()
    bandwidth = calibration.copy_bytes_per_s
    intensities = [p.intensity for p in points] + [calibration.ridge_point(d) for d in dtypes]
    low = min(intensities) / 10
    high = max(intensities) * 10
    x = np.logspace(np.log10(low), np.log10(high), 200)
    for dtype, linestyle in zip(dtypes, ("-", "--", ":", "-.")):
        peak = calibration.matmul_flops_per_s(dtype)
        ax.plot(x, np.minimum(bandwidth * x, peak) / 1e9, color="0.35", linestyle=linestyle,
                linewidth=1.4, label=f"roof: {str(dtype)[6:]} matmul {peak / 1e9:,.3g} GFLOP/s")
    ax.plot([], [], " ", label=f"slope: copy bandwidth {bandwidth / 1e9:,.3g} GB/s")
    for color, point in zip(PALETTE, points):
        roof = min(bandwidth * point.intensity, calibration.matmul_flops_per_s(dtypes[0]))
        ax.scatter(point.intensity, point.flops_per_s / 1e9, color=color, zorder=3,
                   label=point.label)
        ax.annotate(f"{point.flops_per_s / roof:.0%}",
                    (point.intensity, point.flops_per_s / 1e9), textcoords="offset points",
                    xytext=(6, -10), fontsize=8, color=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title(title or f"Roofline: {calibration.fingerprint.device_name}")
    ax.legend(loc="lower right", fontsize=8)
    return ax
