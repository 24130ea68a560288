"""Data layer: documents and their spans (types), BRAT files (brat), the NER corpus a config names (ner_corpus:
PharmaCoNER via pharmaconer, or synthetic), sentence ranges (text), length-grouped batching, and downloads
(download, http). It knows no model and no training loop; span <-> tag conversion and each approach's datamodule
live in approaches/<name>/."""
