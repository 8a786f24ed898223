"""Tests of the stacklab XBlock distribution (xblock/): its OLX and hastexo import modules need no XBlock."""

from __future__ import annotations

import sys
from pathlib import Path

XBLOCK_SRC = Path(__file__).resolve().parents[2] / "xblock" / "src"
if str(XBLOCK_SRC) not in sys.path:
    sys.path.insert(0, str(XBLOCK_SRC))
