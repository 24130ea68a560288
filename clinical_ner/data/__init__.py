"""Data layer: BRAT documents, the PharmaCoNER corpus, span <-> tag conversion, datamodules."""
