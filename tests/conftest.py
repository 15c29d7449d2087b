import sys
from pathlib import Path

# tests/ is the root for the test helpers (harness/, differential/normalise.py).
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "differential"))
