"""The record a run leaves: its folder's layout (folder.py), results.json (results.py) and which code computed it
(code_version.py). A low layer: every layer may read it; it imports nothing of run/ above it."""
