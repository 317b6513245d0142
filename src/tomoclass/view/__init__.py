"""Looking at tomoclass outputs: napari layers (:mod:`tomoclass.view.layers`), the viewer."""

from tomoclass.view.layers import build_layers, class_colors, points_layers

__all__ = ["build_layers", "class_colors", "points_layers"]
