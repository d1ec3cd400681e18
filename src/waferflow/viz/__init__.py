"""Plots a person looks at before reading numbers: wafer maps, overlays and galleries."""

from waferflow.viz.wafer_plots import plot_wafer, save_gallery

__all__ = ["plot_wafer", "save_gallery"]
