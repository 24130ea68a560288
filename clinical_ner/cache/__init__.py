"""Caches that outlive a run: where they live (location.py) and what an entry's manifest promises (manifest.py)."""
