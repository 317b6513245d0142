"""Background boxes for training a detector: see :mod:`tomoclass.data.background`.

The box-choosing logic lives in ``data`` (``extract --background`` and ``simulate tomograms
--background`` use it, and ``data`` may not import ``locate``); this module keeps
``tomoclass.locate.background_boxes`` importable.
"""

from tomoclass.data.background import background_boxes

__all__ = ["background_boxes"]
