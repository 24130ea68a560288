"""Seq2seq (generative) NER: prompts, units, answer grammar, decoding, parsing, datamodule, module, stage."""
