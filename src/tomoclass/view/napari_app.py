"""Open napari with the layers of :func:`tomoclass.view.build_layers` (``tomoclass[napari]``)."""

from __future__ import annotations

from collections.abc import Sequence

from tomoclass.errors import TomoclassError
from tomoclass.view.layers import LayerData

#: What ``tomoclass view`` says when napari is missing.
NAPARI_MISSING = ("tomoclass view needs napari with a Qt backend: pip install 'tomoclass[napari]' "
                  "(or 'napari[all]')")


def open_viewer(layers: Sequence[LayerData], *, title: str = "tomoclass", run: bool = True):
    """Add the layers to a new napari viewer and (``run``) start its event loop.

    Raises
    ------
    TomoclassError
        napari is not installed (one line, naming the extra to install).
    """
    try:
        import napari
    except ImportError:
        raise TomoclassError(NAPARI_MISSING) from None
    viewer = napari.Viewer(title=title)
    for data, kwargs, layer_type in layers:
        viewer.add_layer(napari.layers.Layer.create(data, kwargs, layer_type))
    if run:
        napari.run()
    return viewer
