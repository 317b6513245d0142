import argparse

import pytest

from tomoclass.cli.main import COMMAND_MODULES, build_parser, main


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def _leaves(parser: argparse.ArgumentParser, path: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every runnable command (``simulate tomograms``, ``dataset info``, ``train``...)."""
    subs = _subcommands(parser)
    if not subs:
        return {path: parser}
    out = {}
    for name, sub in subs.items():
        out.update(_leaves(sub, f"{path} {name}".strip()))
    return out


def test_every_subcommand_registers():
    subs = _subcommands(build_parser())
    assert set(subs) == {name.replace("_", "-") for name in COMMAND_MODULES}
    leaves = _leaves(build_parser())
    assert {p.split()[0] for p in leaves} == set(subs)
    for path, sub in leaves.items():
        assert callable(sub.get_default("func")), path


@pytest.mark.parametrize("name", [n.replace("_", "-") for n in COMMAND_MODULES])
def test_each_subcommand_parses_its_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([name, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: tomoclass {name}")


def test_unknown_subcommand_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["no-such-command"])
    assert exc.value.code == 2


def test_version_exits_zero(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "tomoclass" in capsys.readouterr().out


def test_option_prefixes_are_refused(capsys):
    """A prefix of a real option (argparse's default abbreviation) is an error, not that option."""
    import pytest

    parser = build_parser()
    # the full option parses ...
    args = parser.parse_args(["simulate", "phantoms", "--voxel-size-angstrom", "10"])
    assert args.voxel_size_angstrom == 10
    # ... its prefix does not, at any depth of subcommands
    for argv in (["simulate", "phantoms", "--voxel-size", "10"], ["--vers"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 2
    assert "unrecognized arguments: --voxel-size" in capsys.readouterr().err


def test_every_parser_refuses_prefixes():
    import argparse

    def walk(p):
        yield p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for child in a.choices.values():
                    yield from walk(child)

    parsers = list(walk(build_parser()))
    assert len(parsers) > len(COMMAND_MODULES)
    assert all(p.allow_abbrev is False for p in parsers)
