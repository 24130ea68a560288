"""What the terminal shows besides log lines: progress bars (progress.py)."""
