from tomoclass.cli.main import COMMAND_MODULES, build_parser, main


def test_every_subcommand_registers():
    parser = build_parser()
    text = parser.format_help()
    for name in COMMAND_MODULES:
        assert name.replace("_", "-") in text


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
