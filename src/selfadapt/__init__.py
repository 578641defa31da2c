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

The runners, one per command, each with the config its ``--config`` fills (imported on first use)::

    run_knowledge_eval(KnowledgeEvalConfig())         # eval knowledge: the condition table on SQuAD passages
    run_knowledge_training(ReSTEMConfig(), KnowledgeTrainConfig())  # train knowledge: ReST-EM on the self-edit policy
    run_continual_eval(ContinualConfig())             # eval continual: passages in sequence, the forgetting matrix
    run_arc_eval(ArcEvalConfig())                     # eval arc: in-context, TTT, own self-edits, oracle, policies
    run_arc_training(ArcTrainConfig(), ArcSettings("training"))  # train arc: ReST-EM on ARC training tasks
    run_rrr_probe(ProbeConfig())                      # rrr probe: where Reflect, Retry, Reward can learn
    run_build_failures(FailuresConfig())              # rrr build-failures: the queries the model always fails
    run_rrr_train(RRRTrainConfig(failures=["RUN"], grpo=RRRGRPOConfig()))  # rrr train: GRPO on the reflection
    run_rrr_eval(RRREvalConfig())                     # rrr eval: first and second attempts, before and after
    learn(["notes.md"], "my-adapter", LearnConfig())  # learn: documents into one adapter (cfg optional)
    ask(["question"], "my-adapter", cfg=AskConfig())  # ask: answers by the adapters, model objects handed back
"""

from .answering import AskConfig, ask
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

_LAZY = {  # the runners and their configs: their modules import TRL, Ray's helpers, the tasks (seconds)
    "run_knowledge_eval": "knowledge.experiment", "KnowledgeEvalConfig": "knowledge.experiment",
    "run_knowledge_training": "knowledge.train", "KnowledgeTrainConfig": "knowledge.train",
    "ReSTEMConfig": "restem", "run_continual_eval": "knowledge.continual", "ContinualConfig": "knowledge.continual",
    "run_arc_eval": "arc.experiment", "ArcEvalConfig": "arc.experiment", "run_arc_training": "arc.experiment",
    "ArcTrainConfig": "arc.experiment", "ArcSettings": "arc.experiment",
    "run_rrr_probe": "rrr.experiment", "ProbeConfig": "rrr.experiment", "run_build_failures": "rrr.experiment",
    "FailuresConfig": "rrr.experiment", "run_rrr_train": "rrr.experiment", "RRRTrainConfig": "rrr.experiment",
    "run_rrr_eval": "rrr.experiment", "RRREvalConfig": "rrr.experiment", "RRRGRPOConfig": "rrr.grpo",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

__all__ = [
    "Domain", "Evaluation", "InnerLoopResult", "InvalidSelfEdit", "ItemError", "JudgeConfig", "KnowledgeDomain",
    "LearnConfig", "LLMJudge", "LoadedModel", "LocalJudge", "LoRAConfig", "ModelLoadError", "NonFiniteLossError",
    "ResidentLoRA", "SamplingConfig",
    "ask", "evaluate_base", "evaluate_selfedit", "generate", "grade", "load_adapter", "load_external_selfedits",
    "learn", "load_model", "load_passages", "write_selfedits", "AskConfig", *_LAZY,
]
