"""The knowledge-incorporation domain (SQuAD passages, no-context QA)."""

from .data import DatasetError, Passage, Question, load_external_selfedits, load_passages
from .domain import KnowledgeDomain
from .measure import qa_prompt
from .selfedit import FORMATS

__all__ = ["DatasetError", "FORMATS", "KnowledgeDomain", "Passage", "Question",
           "load_external_selfedits", "load_passages", "qa_prompt"]
