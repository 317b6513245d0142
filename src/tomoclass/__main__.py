"""``python -m tomoclass`` (what ``torchrun -m tomoclass train ...`` runs)."""

from tomoclass.cli.main import entry

if __name__ == "__main__":
    entry()
