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
