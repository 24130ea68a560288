"""clinical_ner.generative"""
