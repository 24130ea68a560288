"""clinical_ner: Spanish clinical NER with Llama models (token classification vs. seq2seq)."""

__version__ = "0.1.0"
