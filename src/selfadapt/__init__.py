"""selfadapt: language models that adapt themselves by writing their own training data.

The Python API mirrors the CLI::

    from selfadapt import load_model, ResidentLoRA, LoRAConfig, KnowledgeDomain, load_passages
    from selfadapt import write_selfedits, evaluate_selfedit, SamplingConfig

    m = load_model()                                   # embedded SmolLM2-135M-Instruct
    lora = ResidentLoRA(m.model, m.tokenizer, LoRAConfig(epochs=5))
    domain = KnowledgeDomain(m.tokenizer, fmt="implications")
    passage = load_passages("eval200", limit=1)[0]
    (edits,), _ = write_selfedits(lora.model, m.tokenizer, domain, [passage], 1, SamplingConfig(), seed=0)
    result = evaluate_selfedit(lora, domain, passage, edits[0], seed=0)
    print(result.before, result.score)
"""

from .answering import ask
from .domain import Domain, Evaluation, InvalidSelfEdit, ItemError
from .generation import SamplingConfig, generate
from .grading import grade
from .inner_loop import InnerLoopResult, evaluate_base, evaluate_selfedit
from .judge import JudgeConfig, LLMJudge, LocalJudge
from .knowledge import KnowledgeDomain, load_external_selfedits, load_passages
from .lora import LoRAConfig, NonFiniteLossError, ResidentLoRA, load_adapter
from .models import LoadedModel, ModelLoadError, load_model
from .policy import write_selfedits
from .teaching import LearnConfig, learn

__version__ = "0.1.0"

__all__ = [
    "Domain", "Evaluation", "InnerLoopResult", "InvalidSelfEdit", "ItemError", "JudgeConfig", "KnowledgeDomain",
    "LearnConfig", "LLMJudge", "LoadedModel", "LocalJudge", "LoRAConfig", "ModelLoadError", "NonFiniteLossError",
    "ResidentLoRA", "SamplingConfig",
    "ask", "evaluate_base", "evaluate_selfedit", "generate", "grade", "load_adapter", "load_external_selfedits",
    "learn", "load_model", "load_passages", "write_selfedits",
]
