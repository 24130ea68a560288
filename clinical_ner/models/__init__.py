"""clinical_ner.models"""
