"""Names inside a run folder that several layers share (stages write them; loggers, predict and ranks read them)."""

MODEL_DIR = "model"  # <run dir>/model: the saved weights, tokenizer and INFERENCE_FILE
INFERENCE_FILE = "clinical_ner.json"  # decoding settings saved beside the weights
PREDICTIONS_DIR = "predictions"  # <run dir>/predictions/<split>/<doc>.ann
RANK_LOGS = "ranks"  # <run dir>/ranks/rank-<n>.log: what ranks > 0 printed
