"""The bad-input suite: every case runs the CLI in-process on a small project folder and
asserts the exit code, the one-line message (no traceback) and that no file of the project
changed. Listed in docs/errors.md ("Bad-input suite")."""

from __future__ import annotations

import pytest
from badinput_support import make_project, snapshot
from train_support import TINY_MODEL, one_thread, tiny_model_args

from tomoclass.cli.main import main

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)

B = "{P}/bad"
TRAIN = ["train", "--no-progress", "--model", TINY_MODEL, *tiny_model_args(), "--epochs", "1",
         "--batch-size", "6", "--lr-reference-batch", "6"]
EXTRACT = ["extract", "--tables", "{P}/tomo.star", "--box", "8", "--test-tomograms", ""]

# (id, argv, exit code, text the one error line (or, exit 0, the output) contains)
CASES = [
    # -- output paths: a project folder, a file, under a file, unwritable, another kind
    ("extract-into-project", [*EXTRACT, "--tomograms", "{P}/tomo.mrc", "--out", "{P}"], 2,
     "is not a tomoclass output"),
    ("extract-into-project-overwrite",
     [*EXTRACT, "--tomograms", "{P}/tomo.mrc", "--out", "{P}", "--overwrite"], 2,
     "is not a tomoclass output"),
    ("extract-out-is-file", [*EXTRACT, "--tomograms", "{P}/tomo.mrc", "--out", "{P}/notes.txt"],
     2, "exists and is not a folder"),
    ("extract-out-under-file",
     [*EXTRACT, "--tomograms", "{P}/tomo.mrc", "--out", "{P}/notes.txt/sub"], 2,
     "is a file, not a folder"),
    ("extract-out-proc", [*EXTRACT, "--tomograms", "{P}/tomo.mrc", "--out", "/proc/tc_x/ds"], 2,
     "free on that disk"),
    ("extract-into-dataset", [*EXTRACT, "--tomograms", "{P}/tomo.mrc", "--out", "{P}/ds"], 2,
     "pass --overwrite"),
    ("extract-overwrite-foreign",
     [*EXTRACT, "--tomograms", "{P}/tomo.mrc", "--out", f"{B}/ds_foreign", "--overwrite"], 2,
     "'mynotes.txt' that tomoclass did not write"),
    ("extract-into-run", [*EXTRACT, "--tomograms", "{P}/tomo.mrc", "--out", "{P}/runA"], 2,
     "is a tomoclass run folder"),
    ("evaluate-into-run", ["evaluate", "--run", "{P}/runA", "--data", "{P}/ds", "--out",
                           "{P}/runA"], 2, "is a tomoclass run folder"),
    ("evaluate-into-run-overwrite", ["evaluate", "--run", "{P}/runA", "--data", "{P}/ds",
                                     "--out", "{P}/runA", "--overwrite"], 2,
     "is a tomoclass run folder"),
    ("evaluate-into-dataset", ["evaluate", "--run", "{P}/runA", "--data", "{P}/ds", "--out",
                               "{P}/ds"], 2, "is a tomoclass dataset folder"),
    ("evaluate-into-project", ["evaluate", "--run", "{P}/runA", "--data", "{P}/ds", "--out",
                               "{P}"], 2, "is not a tomoclass output"),
    ("evaluate-out-file", ["evaluate", "--run", "{P}/runA", "--data", "{P}/ds", "--out",
                           "{P}/notes.txt"], 2, "exists and is not a folder"),
    ("compare-into-project", ["compare", "{P}/runA", "--out", "{P}"], 2,
     "is not a tomoclass output"),
    ("compare-into-dataset", ["compare", "{P}/runA", "--out", "{P}/ds", "--overwrite"], 2,
     "is a tomoclass dataset folder"),
    ("import-into-project", ["dataset", "import", "{P}/tomo.star", "--out", "{P}"], 2,
     "is not a tomoclass output"),
    ("import-into-dataset", ["dataset", "import", "{P}/tomo.star", "--out", "{P}/ds"], 2,
     "already holds a dataset output"),
    ("import-overwrite-own-input", ["dataset", "import", "{P}/ds/particles.star", "--out",
                                    "{P}/ds", "--overwrite"], 2, "an input of this command"),
    ("export-into-project", ["dataset", "export", "{P}/ds", "--out", "{P}"], 2,
     "is not a tomoclass output"),
    ("export-into-dataset", ["dataset", "export", "{P}/ds", "--out", "{P}/ds", "--overwrite"], 2,
     "is a tomoclass dataset folder"),
    ("simulate-subtomograms-into-project", ["simulate", "subtomograms", "--classes", "globule",
                                            "--n-per-class", "1", "--out", "{P}"], 2,
     "is not a tomoclass output"),
    ("simulate-subtomograms-into-dataset", ["simulate", "subtomograms", "--classes", "globule",
                                            "--n-per-class", "1", "--out", "{P}/ds"], 2,
     "already holds a dataset output"),
    ("simulate-tomograms-into-project", ["simulate", "tomograms", "--classes", "globule",
                                         "--out", "{P}"], 2, "is not a tomoclass output"),
    ("simulate-tomograms-proc", ["simulate", "tomograms", "--classes", "globule",
                                 "--shape-zyx", "8", "8", "8", "--out", "/proc/tc_x"], 2,
     "cannot create the folder"),
    ("train-into-project", [*TRAIN, "--data", "{P}/ds", "--out", "{P}"], 2,
     "is not a tomoclass output"),
    ("train-into-dataset", [*TRAIN, "--data", "{P}/ds", "--out", "{P}/ds"], 2,
     "is a tomoclass dataset folder"),
    ("train-into-run", [*TRAIN, "--data", "{P}/ds", "--out", "{P}/runA"], 2, "use --resume"),
    ("train-out-file", [*TRAIN, "--data", "{P}/ds", "--out", "{P}/notes.txt"], 2,
     "exists and is not a folder"),
    ("train-resume-locked", [*TRAIN, "--data", "{P}/ds", "--out", f"{B}/run_locked", "--resume",
                             f"{B}/run_locked/checkpoints/last.pt", "--epochs", "3"], 2,
     "in use by a tomoclass training"),
    ("evaluate-locked-run", ["evaluate", "--run", f"{B}/run_locked", "--data", "{P}/ds"], 2,
     "in use by a tomoclass training"),
    ("train-resume-finished", [*TRAIN[:-6], "--data", "{P}/ds", "--out", "{P}/runA",
                               "--resume"], 0, "already finished its 1 epochs"),
    ("locate-no-background", ["locate", "--run", "{P}/runA", "--tomogram", "{P}/tomo.mrc",
                              "--out", "{O}/picks.star", "--no-progress"], 2,
     "has no 'background' class"),
    ("locate-score-maps-into-project", ["locate", "--run", "{P}/runA", "--tomogram",
                                        "{P}/tomo.mrc", "--out", "{O}/picks.star",
                                        "--score-maps", "{P}", "--method", "boxes"], 2,
     "is not a tomoclass output"),
    ("predict-over-its-input", ["predict", "--run", "{P}/runA", "--tomogram", "{P}/tomo.mrc",
                                "--coords", "{P}/tomo.star", "--out", "{P}/tomo.star",
                                "--no-progress"], 2, "is an input of this command"),
    ("cam-out-folder", ["cam", "--run", "{P}/runA", "--data", "{P}/ds", "--out", "{P}/ds",
                        "--n", "1", "--split", "val"], 2, "is a folder"),
    ("cam-mrc-dir-into-project", ["cam", "--run", "{P}/runA", "--data", "{P}/ds", "--out",
                                  "{O}/cam.png", "--mrc-dir", "{P}"], 2,
     "is not a tomoclass output"),
    ("demo-into-project", ["demo", "--out", "{P}"], 2, "is not a tomoclass output"),
    ("demo-into-run", ["demo", "--out", "{P}/runA", "--overwrite"], 2,
     "is a tomoclass run folder"),
    ("locate-several-into-project", ["locate", "--run", "{P}/runA", "--tomogram",
                                     "{P}/tomo.mrc", f"{B}/nan.mrc", "--out", "{P}"], 2,
     "is not a tomoclass output"),
    ("score-picks-json-over-input", ["score-picks", "--truth", "{P}/tomo.star", "--picks",
                                     "{P}/tomo.csv", "--radius", "3", "--json", "{P}/tomo.csv"], 2,
     "is an input of this command"),
    # -- MRC volumes
    ("mrc-missing", ["inspect", "--tomogram", f"{B}/nope.mrc"], 2, "no such file"),
    ("mrc-truncated", ["inspect", "--tomogram", f"{B}/truncated.mrc"], 2, "truncated"),
    ("mrc-gzip-named-mrc", ["inspect", "--tomogram", f"{B}/gzipped.mrc"], 2,
     "gzip-compressed file"),
    ("mrc-folder", ["inspect", "--tomogram", f"{B}/folder.mrc"], 2, "is a folder"),
    ("mrc-empty", ["inspect", "--tomogram", f"{B}/empty.mrc"], 2, "not a readable MRC"),
    ("mrc-garbage", ["inspect", "--tomogram", f"{B}/garbage.mrc"], 2, ""),
    ("mrc-image-stack", ["inspect", "--tomogram", f"{B}/stack.mrcs"], 2, "stack of 5 2D images"),
    ("mrc-2d-image", ["inspect", "--tomogram", f"{B}/image2d.mrc"], 2, "2D image"),
    ("mrc-complex-mode", ["inspect", "--tomogram", f"{B}/complex.mrc"], 2, "mode 4"),
    ("mrc-voxel-zero", ["inspect", "--tomogram", f"{B}/voxel0.mrc"], 2, "--voxel-size"),
    ("mrc-anisotropic", ["inspect", "--tomogram", f"{B}/aniso.mrc"], 2,
     "anisotropic voxel size (10, 10, 20)"),
    ("mrc-absurd-voxel", ["inspect", "--tomogram", f"{B}/absurd_voxel.mrc"], 2,
     "outside the plausible range"),
    ("mrc-nan", ["inspect", "--tomogram", f"{B}/nan.mrc"], 2, "NaN"),
    ("mrc-constant", ["inspect", "--tomogram", f"{B}/constant.mrc"], 2, "constant"),
    ("mrc-trailing-bytes", ["inspect", "--tomogram", f"{B}/trailing.mrc"], 0, "tomo"),
    ("extract-nan-tomogram", [*EXTRACT, "--tomograms", f"{B}/nan.mrc", "--tables",
                              f"{B}/nancenter.csv", "--out", "{O}/ds"], 2, "are NaN/Inf"),
    ("extract-huge-values", [*EXTRACT, "--tomograms", f"{B}/huge.mrc", "--out", "{O}/ds"], 2,
     "overflow float32"),
    # -- particle tables
    ("table-missing", ["inspect", "--tomogram", "{P}/tomo.mrc", "--table", f"{B}/nope.star"], 2,
     "nope.star"),
    ("table-empty", ["inspect", "--table", f"{B}/empty.star"], 2, "empty.star"),
    ("table-no-data-block", ["inspect", "--table", f"{B}/noblock.star"], 2, "noblock.star"),
    ("table-missing-z", ["inspect", "--table", f"{B}/noz.csv"], 2, "noz.csv"),
    ("table-text-coordinate", ["inspect", "--table", f"{B}/textcoord.csv"], 2, "textcoord.csv"),
    ("table-nan-coordinate", ["inspect", "--table", f"{B}/nancoord.csv"], 2, "nancoord.csv"),
    ("table-binary", ["inspect", "--table", f"{B}/binary.star"], 2, "binary.star"),
    ("table-outside", [*EXTRACT[:1], "--tomograms", "{P}/tomo.mrc", "--tables",
                       f"{B}/outside.csv", "--box", "8", "--out", "{O}/ds", "--border", "skip",
                       "--test-tomograms", ""], 0, "skipped_outside"),
    ("table-huge-coordinate-hint", ["inspect", "--tomogram", "{P}/tomo.mrc", "--table",
                                    f"{B}/huge.csv"], 0, "more than any binning"),
    ("table-duplicates", [*EXTRACT[:1], "--tomograms", "{P}/tomo.mrc", "--tables",
                          f"{B}/dups.csv", "--out", "{O}/ds"], 2, "dups.csv"),
    ("extract-box-larger-than-tomogram", [*EXTRACT[:1], "--tomograms", "{P}/tomo.mrc",
                                          "--tables", "{P}/tomo.csv", "--out", "{O}/ds"], 2,
     "larger than the tomogram"),
    ("table-unknown-class", [*EXTRACT[:1], "--tomograms", "{P}/tomo.mrc", "--tables",
                             f"{B}/unknownclass.csv", "--classes", "a,b", "--out", "{O}/ds"], 2,
     "zzz"),
    # -- configs
    ("simulate-config-missing", ["simulate", "subtomograms", "--config", f"{B}/nope.yaml",
                                 "--out", "{O}/s"], 2, "nope.yaml"),
    ("simulate-config-not-yaml", ["simulate", "subtomograms", "--config", f"{B}/notyaml.yaml",
                                  "--out", "{O}/s"], 2, "notyaml.yaml"),
    ("simulate-config-unknown-key", ["simulate", "subtomograms", "--config",
                                     f"{B}/unknown_key.yaml", "--out", "{O}/s"], 2,
     "no_such_option"),
    ("simulate-config-python-tag", ["simulate", "subtomograms", "--config",
                                    f"{B}/python_tag.yaml", "--out", "{O}/s"], 2,
     "python_tag.yaml"),
    ("simulate-config-list", ["simulate", "subtomograms", "--config", f"{B}/list.yaml",
                              "--out", "{O}/s"], 2, "list.yaml"),
    ("train-config-negative", [*TRAIN, "--config", f"{B}/train_negative.yaml", "--data",
                               "{P}/ds", "--out", "{O}/r"], 2, "epochs"),
    ("train-config-unknown", [*TRAIN, "--config", f"{B}/train_unknown.yaml", "--data", "{P}/ds",
                              "--out", "{O}/r"], 2, "learning_speed"),
    ("train-config-bad-type", [*TRAIN, "--config", f"{B}/train_badtype.yaml", "--data",
                               "{P}/ds", "--out", "{O}/r"], 2, "batch_size"),
    # -- datasets
    ("dataset-no-meta", ["dataset", "info", f"{B}/ds_nometa"], 2, "dataset.yaml"),
    ("dataset-version", ["dataset", "info", f"{B}/ds_version"], 2, "format version 99"),
    ("dataset-row-count", ["dataset", "info", f"{B}/ds_rows"], 2, "rows for 3 subtomograms"),
    ("dataset-info-nan-rows", ["dataset", "info", f"{B}/ds_nan"], 0, "row 2 (t0 at x 0, y 0, z 2)"),
    ("evaluate-nan-rows", ["evaluate", "--run", "{P}/runA", "--data", f"{B}/ds_nan", "--split",
                           "train", "--out", "{O}/e"], 2, "row 2 (t0"),
    ("train-nan-rows", [*TRAIN, "--data", f"{B}/ds_nan", "--out", "{O}/r"], 2, "row 2 (t0"),
    # -- checkpoints
    ("checkpoint-nan-weights-evaluate", ["evaluate", "--run", f"{B}/run_nan", "--data", "{P}/ds",
                                         "--out", "{O}/e"], 2, "non-finite (NaN/inf) values"),
    ("checkpoint-nan-weights-predict", ["predict", "--run", f"{B}/run_nan", "--tomogram",
                                        "{P}/tomo.mrc", "--coords", "{P}/tomo.star", "--out",
                                        "{O}/p.star", "--no-progress"], 2, "non-finite"),
    ("checkpoint-truncated", ["evaluate", "--run", f"{B}/run_truncated", "--data", "{P}/ds",
                              "--out", "{O}/e"], 2, "truncated or corrupt"),
    ("checkpoint-foreign", ["evaluate", "--run", f"{B}/run_foreign", "--data", "{P}/ds",
                            "--out", "{O}/e"], 2, "not a tomoclass checkpoint"),
    ("checkpoint-pickle", ["evaluate", "--run", f"{B}/run_pickle", "--data", "{P}/ds",
                           "--out", "{O}/e"], 2, "refused"),
    ("checkpoint-missing", ["evaluate", "--run", "{P}/runA", "--data", "{P}/ds",
                            "--checkpoint", "epoch_099", "--out", "{O}/e"], 2, "epoch_099"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("bad") / "proj")
    import pandas as pd

    # one particle centred on the NaN voxel of bad/nan.mrc
    pd.DataFrame({"tomogram": "nan", "x": [12.0], "y": [12.0], "z": [12.0],
                  "class_name": ["a"]}).to_csv(root / "bad" / "nancenter.csv", index=False)
    return root, snapshot(root)


def test_there_are_at_least_sixty_distinct_cases():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) >= 60


@pytest.mark.parametrize(("argv", "code", "text"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input(project, tmp_path, capsys, argv, code, text):
    root, before = project
    argv = [a.replace("{P}", str(root)).replace("{O}", str(tmp_path)) for a in argv]
    got = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert got == code, err
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("tomoclass ")]
        assert len(lines) == 1 and ": error: " in lines[0], err
        assert text in lines[0]
        assert list(tmp_path.iterdir()) == []  # a refused command leaves nothing behind
    else:
        assert text in out + err
    assert snapshot(root) == before
