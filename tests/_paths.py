"""Where the tests find the real material: ``../shared`` beside the checkout, or ``$LUMBAR_SHARED`` (read in place,
never copied). Tests that need it skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LUMBAR_SHARED", REPO.parent / "shared"))
