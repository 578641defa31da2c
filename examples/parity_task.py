"""A complete RRR task: is the sum of a few numbers even or odd? `--task examples/parity_task.py:Parity`"""

import random
import re

from selfadapt.rrr import Verdict


class Parity:
    name = "parity"

    def queries(self, split, n=None):  # seeded, disjoint splits; a query is plain JSON with an "id"
        rng = random.Random(f"parity-{split}")
        qs = [{"id": f"{split}-{i}", "numbers": [rng.randint(1, 99) for _ in range(3)]} for i in range(200)]
        return qs[:n]

    def messages(self, query):
        nums = " + ".join(map(str, query["numbers"]))
        return [{"role": "user",
                 "content": f"Is {nums} even or odd? Answer <answer>even</answer> or <answer>odd</answer>."}]

    def verify(self, query, response):  # parse, never run, the model's answer
        said = re.findall(r"<answer>\s*(even|odd)\s*</answer>", response.lower())
        right = "even" if sum(query["numbers"]) % 2 == 0 else "odd"
        return Verdict(bool(said) and said[-1] == right, f"expected {right}")

    def reference(self, query):  # a correct answer in the asked format (NOVER scores its likelihood)
        return f"<answer>{'even' if sum(query['numbers']) % 2 == 0 else 'odd'}</answer>"

    def check(self, query):  # reject what is not one of this task's queries (reading failure files)
        if not isinstance(query, dict) or len(query.get("numbers", [])) != 3:
            raise ValueError(f"not a parity query: {query!r}")
