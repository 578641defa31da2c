"""How a setting is declared: once, as a config dataclass field with its default and its help.

The CLI's options (``configfile.opt``), the keys of a ``--config`` file and the Python API all
read the same field, so a default cannot differ between them. The help of settings that many
runners share (the model, the device, the backend, ...) is written once here.
"""

from __future__ import annotations

from dataclasses import MISSING, field
from typing import Any, Callable

MODEL = "'smollm2' (embedded), a .gguf file, a model directory, or a Hub id."
DTYPE = "auto | float32 | bfloat16 | float16"
DEVICE = "auto | cpu | cuda | cuda:N"
SEED = "Seed for sampling and LoRA initialisation."
RUNS_DIR = "Where run directories are created."
BACKEND = ("What writes the self-edits: 'hf' (transformers) or 'vllm' (the extra selfadapt[vllm]; its engine "
           "runs before, never beside, the inner loops' model).")
GEN_BATCH_SIZE = ("Self-edits sampled per batch by the hf backend (vLLM schedules its own); default 64 on a GPU, "
                  "8 otherwise.")
PRIOR = ("A prior prompt before what the model writes: reasoning | planning | code | knowledge | null-example "
         "(docs/plugins.md).")
TEMPERATURE = "Self-edit sampling temperature."
TOP_P = "Self-edit nucleus sampling (top-p)."
COLUMNS = ("Your columns for our fields, e.g. 'title=doc_title,context=passage,question=q,answer=a' (fields: "
           "title, context, questions, question, answer).")
DATASET = ("'eval200', 'train', your .json/.jsonl/.csv/.parquet file, a saved datasets directory or a Hub dataset "
           "id (from the local cache); nested or flat (SQuAD) rows.")
SPLIT = ("The split of a Hub dataset id or a saved DatasetDict (default: train); a missing one is named with the "
         "splits there are.")
SUBSET = "The config (subset) name of a Hub dataset id, e.g. 'plain_text'."
FORMAT = "Self-edit format: implications | implications-long | implications-very-long | rewrite | self-qa."
GROUNDED = "Grounded decoding: self-QA answers copy passage spans; other formats use only the passage's words."
INCLUDE_PASSAGE = "Train on the passage as well as the self-edit."
MAX_NEW_TOKENS = "Self-edit length cap (default: per format)."
METRIC = ("Your own per-question score in place of exact match (knowledge) or the ARC checker, hence ReST-EM's "
          "reward: path/to/file.py:NAME or pkg.module:NAME, a function f(prompts, completions, **kwargs) -> "
          "list[float] as TRL writes reward functions (docs/plugins.md).")
POLICY = ("A trained policy (RUN/round-N from `selfadapt train`, or a model spec); repeat for several rounds. "
          "NAME=SPEC names its condition (default: round-N, or policy-<dir>).")


def setting(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | Any = MISSING) -> Any:
    """A dataclass field with its help, as TRL declares its configs: ``field(default, metadata={"help"})``."""
    return field(default=default, default_factory=factory, metadata={"help": help})
