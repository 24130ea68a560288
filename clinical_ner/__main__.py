"""`python -m clinical_ner <command> ...`: the same as the `clinical-ner` command (clinical_ner/cli.py)."""

import sys

from clinical_ner.cli import main

if __name__ == "__main__":
    sys.exit(main())
