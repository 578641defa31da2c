"""The ARC self-edit: a JSON object that configures test-time training.

    {"data_generation": {"use_basic_augmentations": true, "use_size_augmentations": false,
                         "use_chain_augmentations": false, "use_repeat_augmentations": false},
     "training": {"strategy": "train_using_output_tokens", "learning_rate": 1e-4,
                  "num_train_epochs": 2}}

The learning rate is one of a log grid (``LEARNING_RATES``): a small policy chooses
among a few values, ReST-EM can shift that choice, and the grammar that samples it stays
finite (a free number can grow digits until the token budget runs out).

Parsing is strict: the first JSON object in the model's text (prose around it is
ignored) must be exactly this shape. Unknown keys, missing keys, wrong types (``true``
is not an epoch count), out-of-range values, oversized or deeply nested text all raise
``InvalidSelfEdit`` with the reason; the self-edit then earns reward 0 and the loop
moves on. ``SCHEMA`` is the same shape as a JSON Schema, built from the same constants,
for grammar-constrained sampling (``selfadapt.constrained``).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..domain import InvalidSelfEdit

MAX_CHARS = 2000
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
EPOCH_RANGE = (1, 10)
STRATEGIES = {"train_using_all_tokens": "all", "train_using_output_tokens": "output"}
AUGMENTATIONS = {"use_basic_augmentations": "basic", "use_size_augmentations": "size",
                 "use_chain_augmentations": "chain", "use_repeat_augmentations": "repeat"}


@dataclass(frozen=True)
class TTTConfig:
    groups: tuple[str, ...]  # augmentation groups, a subset of augment.GROUPS
    loss_scope: str  # "all" or "output"
    lr: float
    epochs: int

    def to_json(self) -> str:
        """The canonical text: the layout grammar-constrained sampling produces (the learning
        rate as a positional decimal, ``0.00001`` rather than ``1e-05``)."""
        text = json.dumps({
            "data_generation": {k: g in self.groups for k, g in AUGMENTATIONS.items()},
            "training": {"strategy": next(k for k, v in STRATEGIES.items() if v == self.loss_scope),
                         "learning_rate": _LR_SLOT, "num_train_epochs": self.epochs}})
        return text.replace(json.dumps(_LR_SLOT), np.format_float_positional(self.lr, trim="-"))


_LR_SLOT = "<learning rate>"


def config_distribution(selfedits: list[str]) -> dict[str, Counter]:
    """How often each choice was made, per field (learning rate, epochs, loss scope, each
    augmentation group), over self-edits; invalid ones are counted apart. What ReST-EM shifts."""
    dist: dict[str, Counter] = {"learning rate": Counter(), "epochs": Counter(), "loss on": Counter(),
                                **{f"aug: {g}": Counter() for g in AUGMENTATIONS.values()}, "valid": Counter()}
    for text in selfedits:
        try:
            c = parse_selfedit(text)
        except InvalidSelfEdit:
            dist["valid"]["no"] += 1
            continue
        dist["valid"]["yes"] += 1
        dist["learning rate"][np.format_float_positional(c.lr, trim="-")] += 1
        dist["epochs"][str(c.epochs)] += 1
        dist["loss on"][c.loss_scope] += 1
        for g in AUGMENTATIONS.values():
            dist[f"aug: {g}"]["on" if g in c.groups else "off"] += 1
    return dist


def _object(properties: dict) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


SCHEMA = _object({
    "data_generation": _object({k: {"type": "boolean"} for k in AUGMENTATIONS}),
    "training": _object({"strategy": {"enum": list(STRATEGIES)}, "learning_rate": {"enum": list(LEARNING_RATES)},
                         "num_train_epochs": {"type": "integer", "minimum": EPOCH_RANGE[0],
                                              "maximum": EPOCH_RANGE[1]}}),
})


def _exact_keys(obj: object, keys: set[str], where: str) -> dict:
    if not isinstance(obj, dict):
        raise InvalidSelfEdit(f"{where} must be an object")
    if set(obj) != keys:
        extra, missing = sorted(set(obj) - keys), sorted(keys - set(obj))
        raise InvalidSelfEdit(f"{where}: " + "; ".join(
            ([f"unknown key(s) {', '.join(extra)}"] if extra else [])
            + ([f"missing {', '.join(missing)}"] if missing else [])))
    return obj


def parse_selfedit(text: str) -> TTTConfig:
    start = text.find("{")
    if start < 0:
        raise InvalidSelfEdit("no JSON object in the self-edit")
    body = text[start : start + MAX_CHARS + 1]
    try:
        obj, _ = json.JSONDecoder().raw_decode(body)  # the first object; text after it is ignored
    except RecursionError:
        raise InvalidSelfEdit("not valid JSON (nested too deeply)") from None
    except json.JSONDecodeError as e:
        if len(body) > MAX_CHARS:
            raise InvalidSelfEdit(f"no complete JSON object within {MAX_CHARS} characters (longer than that, "
                                  "or never closed)") from None
        raise InvalidSelfEdit(f"not valid JSON ({e.msg})") from None
    obj = _exact_keys(obj, {"data_generation", "training"}, "self-edit")
    gen = _exact_keys(obj["data_generation"], set(AUGMENTATIONS), "data_generation")
    train = _exact_keys(obj["training"], {"strategy", "learning_rate", "num_train_epochs"}, "training")
    for key, value in gen.items():
        if type(value) is not bool:
            raise InvalidSelfEdit(f"data_generation.{key} must be true or false, got {value!r:.40}")
    if train["strategy"] not in STRATEGIES:
        raise InvalidSelfEdit(f"training.strategy must be one of {', '.join(STRATEGIES)}")
    lr, epochs = train["learning_rate"], train["num_train_epochs"]
    if type(lr) not in (int, float) or lr not in LEARNING_RATES:  # false for NaN, inf, 10**400 too
        raise InvalidSelfEdit(f"training.learning_rate must be one of {', '.join(map(str, LEARNING_RATES))}, "
                              f"got {lr!r:.40}")
    if type(epochs) is not int or not EPOCH_RANGE[0] <= epochs <= EPOCH_RANGE[1]:
        raise InvalidSelfEdit(f"training.num_train_epochs must be an integer in [{EPOCH_RANGE[0]}, "
                              f"{EPOCH_RANGE[1]}], got {epochs!r:.40}")
    return TTTConfig(tuple(g for k, g in AUGMENTATIONS.items() if gen[k]), STRATEGIES[train["strategy"]],
                     float(lr), epochs)
