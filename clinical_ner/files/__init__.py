"""Files the package writes and checks: atomic writes (atomic.py) and sha256 digests (digests.py)."""
