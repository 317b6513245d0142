"""Workflows: orchestration of the stages for a trained run, above every pure stage.

A workflow opens files, loads a trained run, chooses the device and composes the stages'
public functions; the stages themselves (``evaluate``'s metrics and reports, ``cam``'s maps
and scores, ...) import no workflow.

- :mod:`~tomoclass.workflows.evaluate`: :func:`~tomoclass.workflows.evaluate.evaluate_run`
  (a run's checkpoint on a dataset split, with the CAM score when the dataset has clean
  volumes), :func:`~tomoclass.workflows.evaluate.evaluate_model`,
  :func:`~tomoclass.workflows.evaluate.checkpoint_curve` (Fig. 4B),
  :func:`~tomoclass.workflows.evaluate.evaluate_baseline` (the nearest-class-mean floor);
- :mod:`~tomoclass.workflows.cam`: :func:`~tomoclass.workflows.cam.cam_for_runs` (the Fig. 5
  figure and MRC maps of trained runs on a dataset);
- :mod:`~tomoclass.workflows.locate`: :func:`~tomoclass.workflows.locate.locate` and
  :func:`~tomoclass.workflows.locate.locate_many` (a run on whole tomograms -> picks, through
  :func:`tomoclass.infer.prepare_tomogram` and the ``locate`` stage);
- :mod:`~tomoclass.workflows.demo`: :func:`~tomoclass.workflows.demo.run_demo` (simulate ->
  extract -> train -> evaluate -> compare -> CAM on built-in phantoms).

This ``__init__`` imports nothing, so that ``tomoclass demo --help`` stays fast: import the
submodule you need.
"""
