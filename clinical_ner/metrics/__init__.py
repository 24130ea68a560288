"""clinical_ner.metrics"""
