"""clinical_ner.reports"""
