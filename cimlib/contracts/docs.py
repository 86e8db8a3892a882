"""Write ``docs/data-model.md``: ``python -m cimlib.contracts.docs [PATH]``."""

from __future__ import annotations

import sys
from pathlib import Path

from cimlib.contracts._docs import render

if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/data-model.md")
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
