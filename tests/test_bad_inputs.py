"""Wrong or hostile input, as a user would give it: each case is the input, the command, the exit
code and a fragment of the message. None may print a traceback, and none may start the long work
(loading the model) before the input is known to be good. Datasets, runs and config files are
in ``test_bad_inputs_runs.py``."""

import json
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from selfadapt import answering, teaching
from selfadapt.cli import app
from selfadapt.documents import read_document
from selfadapt.knowledge.data import load_passages

EXAMPLE = Path(__file__).parents[1] / "examples" / "parity_task.py"


def binary_doc(tmp: Path) -> list[str]:
    (tmp / "doc.txt").write_bytes(bytes(range(256)) * 16)
    return ["learn", str(tmp / "doc.txt"), "--out", str(tmp / "out")]


def markup_name(tmp: Path) -> list[str]:
    (tmp / "report[final].txt").write_bytes(b"\x00\x01\x02" * 100)
    return ["learn", str(tmp / "report[final].txt"), "--out", str(tmp / "out")]


def unknown_extension(tmp: Path) -> list[str]:
    (tmp / "notes.xyz").write_text("The Harlow lighthouse was built in 1871.")
    return ["learn", str(tmp / "notes.xyz"), "--out", str(tmp / "out")]


def _doc(tmp: Path) -> Path:
    (tmp / "harlow.txt").write_text("The Harlow lighthouse was built in 1871 by Edith Crane.\n")
    return tmp / "harlow.txt"


def out_is_a_file(tmp: Path) -> list[str]:
    (tmp / "taken").write_text("x")
    return ["learn", str(_doc(tmp)), "--out", str(tmp / "taken")]


def out_under_a_file(tmp: Path) -> list[str]:
    (tmp / "taken").write_text("x")
    return ["learn", str(_doc(tmp)), "--out", str(tmp / "taken" / "adapter")]


def zero_epochs(tmp: Path) -> list[str]:
    return ["learn", str(_doc(tmp)), "--out", str(tmp / "out"), "--epochs", "0"]


def missing_doc(tmp: Path) -> list[str]:
    return ["learn", str(tmp / "nowhere.txt"), "--out", str(tmp / "out")]


def offset_past_the_end(tmp: Path) -> list[str]:
    return ["eval", "knowledge", "--offset", "100000", "--passages", "2"]


def negative_offset(tmp: Path) -> list[str]:
    return ["eval", "knowledge", "--offset", "-1", "--passages", "2"]


def empty_question(tmp: Path) -> list[str]:
    return ["ask", ""]


def hostile_failures(tmp: Path) -> list[str]:
    (tmp / "evil.py").write_text(f"open({str(tmp / 'ran')!r}, 'w').write('x')\n")
    rec = {"task": f"{tmp / 'evil.py'}:T", "id": "a", "query": {"id": "a"}, "attempt": "x", "reason": "x"}
    (tmp / "failures.jsonl").write_text(json.dumps(rec) + "\n")
    return ["rrr", "train", str(tmp / "failures.jsonl")]


def adapter_dir(tmp: Path) -> Path:
    """An adapter as `learn` leaves one, without training: its files are what the cases break."""
    (tmp / "adapter").mkdir()
    (tmp / "adapter" / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "base_model_name_or_path": "smollm2", "r": 2, "lora_alpha": 4,
         "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}))
    return tmp / "adapter"


def truncated_adapter(tmp: Path) -> list[str]:
    (adapter_dir(tmp) / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00")
    return ["ask", "When was the lighthouse built?", "--adapter", str(tmp / "adapter")]


def empty_adapter_weights(tmp: Path) -> list[str]:
    (adapter_dir(tmp) / "adapter_model.safetensors").write_bytes(b"")
    return ["ask", "When was the lighthouse built?", "--adapter", str(tmp / "adapter")]


def pickled_adapter(tmp: Path) -> list[str]:
    (adapter_dir(tmp) / "adapter_model.bin").write_bytes(b"\x80\x04K\x01.")
    return ["ask", "When was the lighthouse built?", "--adapter", str(tmp / "adapter")]


def learn_with(*flags: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["learn", str(_doc(tmp)), "--out", str(tmp / "out"), *flags]


def binary_html(tmp: Path) -> list[str]:
    (tmp / "page.html").write_bytes(bytes(range(256)) * 16)
    return ["learn", str(tmp / "page.html"), "--out", str(tmp / "out")]


def missing_adapter(tmp: Path) -> list[str]:
    (tmp / "empty").mkdir()
    return ["ask", "When was the lighthouse built?", "--adapter", str(tmp / "empty")]


# (name, setup → command line, exit code, fragment of the message)
CASES: list[tuple[str, Callable[[Path], list[str]], int, str]] = [
    ("a binary file named .txt", binary_doc, 2, "binary data"),
    ("rich markup in a file name survives", markup_name, 2, "report[final].txt"),
    ("an unknown extension", unknown_extension, 2, "not a document selfadapt reads"),
    ("a missing document", missing_doc, 2, "document not found"),
    ("--out is a file", out_is_a_file, 2, "not a directory"),
    ("--out under a file", out_under_a_file, 2, "cannot write"),
    ("--epochs 0", zero_epochs, 2, "epochs must be >= 1"),
    ("--offset past the end", offset_past_the_end, 2, "offset 100000"),
    ("a negative --offset", negative_offset, 2, "offset must be >= 0"),
    ("an empty question", empty_question, 2, "empty question"),
    ("a failure dataset naming a Python file", hostile_failures, 2, "cannot choose code to run"),
    ("a truncated adapter_model.safetensors", truncated_adapter, 2, "adapter_model.safetensors"),
    ("an empty adapter_model.safetensors", empty_adapter_weights, 2, "adapter_model.safetensors"),
    ("a pickled adapter", pickled_adapter, 2, "other formats are refused"),
    ("--chunk-tokens -5 (hung after loading the model)", learn_with("--chunk-tokens", "-5"), 2,
     "chunk_tokens must be >= 16"),
    ("--chunk-tokens 0", learn_with("--chunk-tokens", "0"), 2, "chunk_tokens must be >= 16"),
    ("negative --replay / --checks", learn_with("--replay", "-1", "--checks", "-1"), 2,
     "replay, checks must be >= 0"),
    ("--alpha 0 (an adapter that does nothing)", learn_with("--alpha", "0"), 2, "LoRA alpha must be > 0"),
    ("binary data named .html", binary_html, 2, "binary data"),
    ("an adapter directory without an adapter", missing_adapter, 2, "not an adapter directory"),
]


@pytest.mark.parametrize("name, make, code, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_ends_in_one_clear_line(name, make, code, fragment, tmp_path, monkeypatch, tiny_dir):
    """Loading a model is the long work: a case that gets that far has not checked its input
    first (the adapter cases need a base model: they get the tiny one)."""
    import selfadapt.policy as policy
    from selfadapt.models import load_model

    adapter_case = "adapter" in name
    for module in (teaching, answering, policy):
        monkeypatch.setattr(module, "load_model", (lambda spec, **kw: load_model(str(tiny_dir), device="cpu"))
                            if adapter_case else _refuse)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, make(tmp_path))
    assert res.exit_code == code, res.output
    assert fragment.replace(" ", "") in "".join(res.output.split()), res.output  # rich wraps, even inside words
    assert "Traceback" not in res.output and "the model was loaded" not in res.output
    assert not (tmp_path / "ran").exists()


def _refuse(*args, **kwargs):
    raise AssertionError("the model was loaded before the input was checked")


def test_an_unexpected_error_is_one_line_unless_debug(tmp_path, monkeypatch):
    """What no check foresaw still ends in one line pointing at --debug; --debug shows the traceback."""
    def broken(*args, **kwargs):
        raise KeyError("lm_head.weight")

    monkeypatch.setattr(answering, "ask", broken)
    res = CliRunner().invoke(app, ["ask", "Who built the lighthouse?"])
    assert res.exit_code == 1 and "KeyError: 'lm_head.weight'" in res.output and "--debug" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(app, ["--debug", "ask", "Who built the lighthouse?"])
    assert isinstance(res.exception, KeyError)


def test_an_adapter_says_which_base_it_needs(tmp_path, tiny_dir):
    """`ask` used to load the embedded model under any adapter: an adapter of another base then failed
    in a 329-line size mismatch. The adapter says which model it needs; a path it names is loaded
    only when the user gives it (an adapter may come from someone else), and a wrong --model is named."""
    from peft import LoraConfig, get_peft_model

    from selfadapt.models import load_model

    m = load_model(str(tiny_dir), dtype="float32", device="cpu")
    peft = get_peft_model(m.model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    peft.save_pretrained(tmp_path / "adapter")  # a PEFT adapter saved elsewhere: no selfadapt.json
    res = CliRunner().invoke(app, ["ask", "Who built the lighthouse?", "--adapter", str(tmp_path / "adapter")])
    assert res.exit_code == 2 and f"--model{tiny_dir}" in "".join(res.output.split()), res.output
    answers = answering.ask(["Who built the lighthouse?"], [tmp_path / "adapter"], str(tiny_dir), dtype="float32",
                        device="cpu")
    assert list(answers) == [str(tmp_path / "adapter")]
    other = tmp_path / "other"
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=len(m.tokenizer), hidden_size=48, intermediate_size=64,
                                 num_hidden_layers=1, num_attention_heads=4,
                                 num_key_value_heads=2)).save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(other)
    res = CliRunner().invoke(app, ["ask", "Who built the lighthouse?", "--adapter", str(tmp_path / "adapter"),
                                   "--model", str(other), "--device", "cpu"])
    assert res.exit_code == 2 and "was trained on" in " ".join(res.output.split()), res.output


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=2048))
def test_random_bytes_read_as_a_document_raise_only_value_errors(raw, tmp_path):
    path = tmp_path / "doc.txt"
    path.write_bytes(raw)
    try:
        text = read_document(path)
    except ValueError as e:
        assert str(path) in str(e)
    else:
        assert isinstance(text, str) and "\x00" not in text


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: (st.lists(inner, max_size=4)
                                   | st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                    max_leaves=20)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=JSON, lines=st.booleans())
def test_random_json_as_a_dataset_raises_only_value_errors(data, lines, tmp_path):
    path = tmp_path / ("data.jsonl" if lines else "data.json")
    items = data if isinstance(data, list) else [data]
    path.write_text("\n".join(json.dumps(x) for x in items) if lines else json.dumps(data))
    try:
        passages = load_passages(str(path))
    except ValueError as e:
        assert path.name in str(e)
    else:
        assert all(p.context and p.questions for p in passages)


def test_a_document_with_no_fact_to_check_says_so_before_the_model_loads(tmp_path, monkeypatch, caplog):
    (tmp_path / "note.txt").write_text("hello there, and thanks.")
    monkeypatch.setattr(teaching, "load_model", _refuse)
    with pytest.raises(AssertionError, match="the model was loaded"):  # the warning came first
        teaching.learn([tmp_path / "note.txt"], tmp_path / "out", teaching.LearnConfig())
    assert "note.txt: no sentence names a person, place, date or number" in caplog.text
    (tmp_path / "fact.txt").write_text("The Harlow lighthouse was built in 1871 by Edith Crane.")
    caplog.clear()
    with pytest.raises(AssertionError, match="the model was loaded"):
        teaching.learn([tmp_path / "fact.txt"], tmp_path / "out2", teaching.LearnConfig())
    assert "no sentence names" not in caplog.text


def test_a_document_in_another_script_routes_its_questions_to_its_adapter():
    """Words were [a-z0-9]+: a Russian document's adapter knew only "1893" and answered nothing,
    and "Lumière" became "lumi"."""
    from selfadapt.routing import about, content_words

    vocabulary = content_words("Город Новосибирск основан в 1893 году. Café Lumière.")
    assert {"новосибирск", "1893", "lumière"} <= vocabulary
    assert about("Когда основан Новосибирск?", sorted(vocabulary))

