"""clinical_ner.tasks"""
