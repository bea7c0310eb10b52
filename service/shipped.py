"""Where the files that ship beside the code are: the migrations (alembic.ini, alembic/) and the
sample definitions (definitions/).

In a source checkout they are at the top of the repository. An installed wheel has no such
top: pyproject.toml's data-files put them under the environment's prefix, in
share/statewright/ (looking beside the installed package instead found site-packages/alembic,
the Alembic library itself, and `statewright db upgrade` failed)."""

from __future__ import annotations

import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
INSTALLED = Path(sys.prefix) / "share" / "statewright"


def shipped(name: str) -> Path:
    """``name`` (``alembic.ini``, ``alembic``, ``definitions``) where this copy of Statewright
    keeps it: the checkout it runs from, else the installed copy."""
    base = CHECKOUT if (CHECKOUT / "pyproject.toml").is_file() else INSTALLED
    return base / name
