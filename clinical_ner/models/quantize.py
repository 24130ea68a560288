"""QLoRA (`quantization=nf4`): the frozen base loaded in 4-bit NF4 through bitsandbytes, prepared for k-bit
training, and the adapter folder a QLoRA run saves (LoRA + trained head; the base is re-quantized on reload).

bitsandbytes 0.50 also runs 4-bit on CPU (slowly): the tests use that to keep this path real. Its traps, met
here: every quantized Linear's output size must be a multiple of 32; a token classifier's `score` head must be
left out of quantization (`llm_int8_skip_modules`), after which peft's `target_modules="all-linear"` fails, so
the LoRA targets are listed (conf/recipe).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch
from omegaconf import OmegaConf

from clinical_ner.config import listed_gpu_ids
from clinical_ner.errors import UserError

QLORA_FILE = "qlora_base.json"  # beside the adapter: how to rebuild the 4-bit base it was trained on
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def enabled(quantization) -> bool:
    """True when `quantization` (a QuantizationConfig or None) asks for a 4-bit base."""
    return quantization is not None and str(quantization.name) != "none"


def check_quantization(cfg) -> None:
    """Refuse, before anything loads, what a 4-bit base cannot do."""
    q = cfg.quantization
    if not enabled(q):
        return
    if cfg.approach.finetune != "lora":
        raise UserError(
            f"quantization={q.name} with approach.finetune={cfg.approach.finetune}: 4-bit weights are frozen "
            "(only LoRA adapters and the head train on them); use approach.finetune=lora or quantization=none"
        )
    if cfg.corpus.name != "none":
        raise UserError(
            f"quantization={q.name} with corpus={cfg.corpus.name}: continual pretraining updates every weight, "
            "which 4-bit weights cannot; use quantization=none for runs with continual pretraining"
        )
    if not cfg.scale.pretrained:
        raise UserError(
            f"quantization={q.name} quantizes pretrained weights (scale=paper); scale={cfg.scale.name} trains "
            "random weights in full"
        )
    if str(q.compute_dtype) not in DTYPES:
        raise UserError(f"quantization.compute_dtype={q.compute_dtype}: expected one of {', '.join(DTYPES)}")
    if importlib.util.find_spec("bitsandbytes") is None:  # found, not imported: importing it takes seconds
        raise UserError(f"quantization={q.name} needs bitsandbytes: pip install bitsandbytes")


def bnb_config(quantization, skip_modules: list[str] | None = None):
    """The transformers BitsAndBytesConfig of `quantization`; `skip_modules` stay unquantized (None: the
    library's default, i.e. the output head `lm_head`)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=bool(quantization.double_quant),
        bnb_4bit_compute_dtype=DTYPES[str(quantization.compute_dtype)],
        llm_int8_skip_modules=skip_modules,
    )


def gpu_index(devices, local_rank: int) -> int:
    """The CUDA index of the GPU that node-local rank `local_rank` trains on, as Lightning assigns them: the
    rank-th listed id when `trainer.devices` lists GPU ids (`[2, 3]`: rank 1 -> 3), else the rank itself."""
    ids = listed_gpu_ids(devices)
    if ids is None:
        return local_rank
    if not 0 <= local_rank < len(ids):
        raise UserError(
            f"trainer.devices={devices} lists {len(ids)} GPU(s), but this is local rank {local_rank}"
        )
    return ids[local_rank]


def local_device_map(devices=None) -> dict[str, int | str]:
    """Where this process's quantized weights go: the GPU this rank trains on (`trainer.devices` = `devices`,
    None: a count), else the CPU."""
    if not torch.cuda.is_available():
        return {"": "cpu"}
    local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))
    return {"": gpu_index(devices, local_rank)}


def load_kwargs(quantization, skip_modules: list[str] | None = None, devices=None) -> dict:
    """Extra `from_pretrained` arguments that load the base in 4-bit on this process's device (`devices`:
    `trainer.devices`, whose listed GPU ids decide which GPU that is)."""
    return {
        "quantization_config": bnb_config(quantization, skip_modules),
        "device_map": local_device_map(devices),
        "dtype": DTYPES[str(quantization.compute_dtype)],  # of what stays unquantized (norms, head)
    }


def is_quantized(model: torch.nn.Module) -> bool:
    """True when some weight of `model` is stored in 4-bit (a bitsandbytes Params4bit)."""
    return any(getattr(p, "quant_state", None) is not None for p in model.parameters())


def numel(param: torch.Tensor) -> int:
    """Parameter count of a weight, the unpacked one for a 4-bit weight (two values per stored byte)."""
    state = getattr(param, "quant_state", None)
    return state.shape.numel() if state is not None else param.numel()


def prepare_kbit(model: torch.nn.Module, gradient_checkpointing: bool) -> torch.nn.Module:
    """peft's preparation of a 4-bit base: everything frozen, norms and head upcast, input grads on (so
    checkpointed layers see a gradient path); non-reentrant checkpointing is the one DDP accepts."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )


def save_adapter(model, folder: Path, is_main_process: bool) -> None:
    """A QLoRA model as its adapter (LoRA + modules_to_save such as `score`) plus what rebuilds the base.

    Merging into 4-bit weights would re-quantize them (lossy), and a merged bf16 copy would need the full
    base in memory: the adapter is what was trained, and it reloads exactly on the same 4-bit base.
    """
    base = model.get_base_model()
    model.save_pretrained(folder, is_main_process=is_main_process)
    if not is_main_process:
        return
    config = base.config.to_dict()
    config.pop("quantization_config", None)  # kept, the base would be taken as already quantized on disk
    quant = base.config.quantization_config
    record = {
        "config": config,
        "quantization": {
            "name": "nf4",
            "double_quant": bool(quant.bnb_4bit_use_double_quant),
            "compute_dtype": str(quant.bnb_4bit_compute_dtype).removeprefix("torch."),
        },
        "skip_modules": quant.llm_int8_skip_modules,
    }
    (Path(folder) / QLORA_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def is_adapter_folder(folder: Path | str) -> bool:
    """True for a folder `save_adapter` wrote."""
    return (Path(folder) / QLORA_FILE).is_file()


def load_adapter(folder: Path | str, auto_class):
    """Rebuild the 4-bit base named in the adapter's config and attach the trained adapter (and head)."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoConfig

    folder = Path(folder)
    record = json.loads((folder / QLORA_FILE).read_text(encoding="utf-8"))
    config_dict = dict(record["config"])
    config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    quantization = OmegaConf.create(record["quantization"])
    base = auto_class.from_pretrained(
        PeftConfig.from_pretrained(str(folder)).base_model_name_or_path,
        config=config,
        trust_remote_code=False,
        use_safetensors=True,
        **load_kwargs(quantization, record["skip_modules"]),
    )
    return PeftModel.from_pretrained(base, str(folder))
