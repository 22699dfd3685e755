"""Which pipeline `generate` and `compare` run: a tiny offline one with random weights, or a real one from a local
folder or the Hugging Face cache.

Real weights are located before anything heavy is imported, so a missing model is one line at once, not a diffusers
traceback after seconds of imports. Downloads are off unless `--download` is given: the pipelines this tool is for
hold 24-40 GB of weights (FLUX.1-dev is gated behind a license too), which a command should not start fetching unasked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..errors import GPURequiredError, MissingWeightsError, UsageError

if TYPE_CHECKING:
    import torch

# the keys of gna_diffusers.tiny.TINY_PIPELINES, named here so that parsing arguments needs no diffusers
TINY_MODELS = ("cosmos", "flux", "hunyuan_video")
MESSAGE_CHARS = 300  # of a library's own error, quoted after ours


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Which pipeline to load; shared by `generate` and `compare`."""
    p.add_argument("--model", help="hub id or local pipeline folder (default: a tiny offline pipeline with random "
                                   "weights); a hub id must be in the Hugging Face cache unless --download is given")
    p.add_argument("--download", action="store_true",
                   help="let --model download the weights from the Hugging Face hub if they are not cached "
                        "(off by default: tens of GB)")
    p.add_argument("--tiny-model", default="flux", choices=TINY_MODELS,
                   help="which tiny offline pipeline to use when --model is not given")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"],
                   help="weights dtype of a real model (tiny pipelines run in float32)")
    p.add_argument("--device", help="default: cuda if available, else cpu")


def device_for(name: Optional[str]) -> torch.device:
    """The device `--device` names (default cuda if there is one, else cpu), checked against this machine."""
    import torch
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"--device {name!r}: {err}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise GPURequiredError(f"--device {name}: this machine has no CUDA GPU usable by torch "
                                   f"{torch.__version__}; leave --device out to run on the CPU")
        if device.index is not None and device.index >= count:
            raise GPURequiredError(f"--device {name}: this machine has {count} CUDA GPU(s), cuda:0 to "
                                   f"cuda:{count - 1}")
    return device


def _quote(err: BaseException) -> str:
    """The last line of a library's error message, shortened."""
    lines = str(err).strip().splitlines() or [type(err).__name__]
    return lines[-1][:MESSAGE_CHARS]


def _not_cached(model: str) -> str:
    from huggingface_hub import constants
    offline = " with HF_HUB_OFFLINE unset" if constants.HF_HUB_OFFLINE else ""
    return (f"--model {model}: the weights are not on this machine (not in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE}); download them with `hf download {model}` (gated models need `hf auth "
            f"login` first), pass a local pipeline folder, or add --download{offline} to let this command fetch them")


def locate(model: str, download: bool) -> tuple[str, Optional[dict]]:
    """(what to pass to `from_pretrained`, the pipeline's model_index.json or None if it is still to download).

    A local folder must be a diffusers pipeline (hold model_index.json); a hub id must be in the Hugging Face cache
    unless downloads are allowed."""
    path = Path(model).expanduser()
    if path.exists():
        index = path / "model_index.json"
        if not index.is_file():
            raise MissingWeightsError(
                f"--model {model}: {'this folder' if path.is_dir() else 'this file'} is not a diffusers pipeline "
                f"folder (no model_index.json); pass a folder written by `save_pretrained` or by `hf download <hub id> "
                f"--local-dir {model}`, or a hub id such as black-forest-labs/FLUX.1-dev")
        return str(path), json.loads(index.read_text())
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    try:
        validate_repo_id(model)
    except HFValidationError:
        raise MissingWeightsError(f"--model {model}: no such folder on this machine, and not a hub id "
                                  f"(owner/name, e.g. black-forest-labs/FLUX.1-dev)") from None
    cached = try_to_load_from_cache(model, "model_index.json")
    if isinstance(cached, str):
        return model, json.loads(Path(cached).read_text())
    if not download:
        raise MissingWeightsError(_not_cached(model))
    if constants.HF_HUB_OFFLINE:
        raise MissingWeightsError(f"--download {model}: HF_HUB_OFFLINE is set, which forbids downloads; unset it, "
                                  f"or download elsewhere with `hf download {model}` and pass the folder")
    return model, None


def check_transformer(model: str, index: dict) -> None:
    """Refuse, before loading any weights, a pipeline whose transformer gna-diffusers cannot patch."""
    import diffusers

    from ..models import supported_classes
    supported = supported_classes()
    entry = index.get("transformer")
    if not entry or entry[-1] is None:
        raise UsageError(f"--model {model}: {index.get('_class_name', 'this pipeline')} has no transformer; "
                         f"gna-diffusers patches pipelines whose transformer is one of {', '.join(supported)}")
    cls = getattr(diffusers, entry[-1], None)
    if isinstance(cls, type) and not {c.__name__ for c in cls.__mro__} & set(supported):
        raise UsageError(f"--model {model}: its transformer is {entry[-1]}; gna-diffusers supports "
                         f"{', '.join(supported)}")


def load_pipeline(model: Optional[str], tiny: str, device: Optional[torch.device], dtype: str,
                  download: bool = False) -> tuple[Any, str, dict]:
    """(pipeline on `device` (default: `--device`'s default), model kind, default call arguments). Real weights are
    located before torch and diffusers are imported; tiny pipelines run in float32."""
    if model is None:
        from ..tiny import TINY_PIPELINES
        builder, call_args = TINY_PIPELINES[tiny]
        return builder(0).to(device or device_for(None)), tiny, dict(call_args)
    source, index = locate(model, download)
    if index is not None:
        check_transformer(model, index)
    import torch
    from diffusers import DiffusionPipeline

    from ..models import spec_for
    try:
        pipe = DiffusionPipeline.from_pretrained(source, torch_dtype=getattr(torch, dtype),
                                                 local_files_only=not download)
    except OSError as err:  # diffusers and huggingface_hub report missing or unreachable files as OSError
        if download:
            raise MissingWeightsError(f"--model {model}: could not download the weights ({_quote(err)}); check the "
                                      f"id and the network, log in with `hf auth login` for gated models, or pass a "
                                      f"local pipeline folder") from err
        raise MissingWeightsError(f"--model {model}: the weights are only partly on this machine ({_quote(err)}); "
                                  f"complete them with `hf download {model}`, or add --download") from err
    pipe.to(device or device_for(None))
    return pipe, spec_for(pipe.transformer).name, {}


def gpus_available(wanted: int, option: str) -> None:
    """Raise GPURequiredError unless this machine has `wanted` CUDA GPUs."""
    import torch
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < wanted:
        raise GPURequiredError(f"{option}: needs {wanted} CUDA GPU(s); this machine has {count}")

