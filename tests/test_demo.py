"""The README's main job (``tomoclass demo``) at smoke size, through the CLI function."""

import json

import pytest
from train_support import one_thread

from tomoclass.cli.main import main
from tomoclass.io.outputs import check_output_dir

pytestmark = pytest.mark.slow

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def test_quick_demo_writes_report_figures_and_scores(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dilated_densenet3d: test macro F1" in printed and "report:" in printed
    record = json.loads((out / "demo.json").read_text())
    assert set(record["macro_f1"]) == {"dilated_densenet3d", "densenet3d"}
    assert all(0.0 <= f <= 1.0 for f in record["macro_f1"].values())
    for name in ("report.md", "cam.png", "compare/compare.md", "compare/fig4a.png",
                 "compare/fig4b.png", "dataset/clean.npy"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "Comparison (Table 2 layout)" in report
    # `make demo` reruns with --overwrite: nothing in the folder may count as a foreign file
    check_output_dir(out, "demo", overwrite=True)
