"""The fine-tuning approaches, one folder each; an approach never imports another."""
