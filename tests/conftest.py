"""Test helpers (opbuilder, trainhelp, ...) live in tests/ and are imported by name from every
sub-folder of this mirror of src/kiloml/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
