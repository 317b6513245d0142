"""train/options.py: the configuration ``tomoclass train`` builds, as a library function."""

from __future__ import annotations

import pytest

from tomoclass.cli.main import build_parser
from tomoclass.models import list_models
from tomoclass.train import preset
from tomoclass.train.options import config_from_options


def test_preset_and_options_merge_as_the_cli_does():
    assert config_from_options(preset_name="paper") == preset("paper")
    cfg = config_from_options(preset_name="paper", epochs=3, batch_size=None)
    assert (cfg.epochs, cfg.batch_size, cfg.base_lr) == (3, 64, 0.1)  # None: not given
    # the preset's per-model learning rate follows the model option
    assert config_from_options(model="shrec_cnn").base_lr == 4e-4


def test_config_file_is_the_base_and_options_override_it(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(preset("paper", seed=7).to_yaml())
    cfg = config_from_options(config=path, epochs=4, seed=None)
    assert (cfg.optimizer, cfg.base_lr, cfg.seed, cfg.epochs) == ("adam", 0.1, 7, 4)


def test_cli_model_choices_are_the_registry():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    model = next(a for a in train._actions if a.dest == "model")
    assert list(model.choices) == list_models()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["train", "--data", "d", "--out", "o", "--model", "no_such_net"])
    assert exc.value.code == 2


def test_key_value_options_read_yaml_values_and_name_the_option():
    """``--model-arg`` and small_tier.py's ``--set`` share this parser."""
    from tomoclass.errors import InputError
    from tomoclass.train.options import parse_assignment

    assert parse_assignment("batch_size=4", field="--set") == ("batch_size", 4)
    assert parse_assignment(" model_kwargs={head_init: zeros}", field="--set") == (
        "model_kwargs", {"head_init": "zeros"})
    assert parse_assignment("name=a=b", field="--set") == ("name", "a=b")
    for bad, match in (("batch_size", "expected KEY=VALUE"), ("=4", "expected KEY=VALUE"),
                       ("a=[1", "not valid YAML")):
        with pytest.raises(InputError, match=match) as exc:
            parse_assignment(bad, field="--model-arg")
        assert exc.value.field == "--model-arg"
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o",
                                      "--model-arg", "growth-rate=4"])
    assert args.model_arg == [("growth_rate", 4)]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--out", "o", "--model-arg", "a=[1"])
