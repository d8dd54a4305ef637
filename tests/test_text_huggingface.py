"""Hugging Face text models (issue 19): a tiny BERT built from a config and a WordPiece tokenizer trained here with
`tokenizers` (nothing downloaded), fine-tuned by modelci, exported with the tokenizer in the ONNX graph
(onnxruntime-extensions' BertTokenizer in a Loop over the batch), parity-checked with texts longer than the
maximum length, evaluated, served and published with a paired verdict after a change; and a tiny RoBERTa with a
byte-level BPE tokenizer, its graph's ids checked against the tokenizer's on awkward texts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import requests
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import BertTokenizerFast, PreTrainedTokenizerFast

from conftest import ROOT, Result, git
from modelci.errors import UsageError
from modelci.evaluate import extensions
from modelci.evaluate.onnx_model import OnnxModel
from test_image_train import configure

EXAMPLE, REVIEWS = ROOT / "examples" / "reviews-bert", ROOT / "examples" / "reviews"
OUT = Path(".modelci") / "out"
MAX_TOKENS = 16  # NOTE: fewer than most reviews' tokens: the truncation is exercised
FACTORY = '''from pathlib import Path

from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

HERE = Path(__file__).parent


def build(output_dim, hidden=16, layers=1, labels=None):  # the example's, with the labels to choose
    tokenizer = BertTokenizerFast.from_pretrained(HERE / "tokenizer")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64, num_labels=labels or output_dim)
    return BertForSequenceClassification(config), tokenizer
'''
ROBERTA = '''from pathlib import Path

from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizerFast

HERE = Path(__file__).parent


def build(output_dim, positions=34):  # RoBERTa's positions start after its padding id (1): 32 tokens
    tokenizer = RobertaTokenizerFast.from_pretrained(HERE / "roberta-tokenizer")
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=positions, pad_token_id=tokenizer.pad_token_id,
                           num_labels=output_dim)
    return RobertaForSequenceClassification(config), tokenizer
'''
# NOTE: what a byte-level tokenizer reads in its own way: added tokens inside a text (RoBERTa's <mask> takes the
# spaces before it), runs of spaces, tabs and newlines, accents, CJK, emoji, other spaces, a BOM, contractions
AWKWARD = ["the good kettle", "  leading and   many   spaces ", "tab\tand\nnewline\r\n", "", "x", "word " * 40,
           "I loved it!!! 100% <s> not</s> a <pad>", "a   <mask> b <mask>c", "Café naïve résumé — “quotes” 日本語 😀",
           "\ufeffdon't\u00a0you'll\u3000İß\u2028Ω\x07", "<unk><mask><mask>'s"]


@pytest.fixture(scope="module")
def bert_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/reviews-bert, set up as its README says (the reviews' generator, make_tokenizer.py), with 300
    training and 100 evaluation reviews and a tinier BERT."""
    folder = tmp_path_factory.mktemp("bert") / "reviews-bert"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("data", "tokenizer", ".modelci", "__pycache__"))
    for command in ([str(REVIEWS / "generate_data.py"), "--out", "data", "--train", "300", "--eval", "100"],
                    ["make_tokenizer.py", "--size", "400"]):
        subprocess.run([sys.executable, *command], cwd=folder, check=True, capture_output=True)
    configure(folder, data__text={"max_tokens": MAX_TOKENS}, model__params={"hidden": 16, "layers": 1},
              train__epochs=2, train__lr=0.002)
    return folder


@pytest.fixture(scope="module")
def trained(bert_repo: Path) -> Path:
    for step in ("train", "export", "evaluate"):
        done = subprocess.run([sys.executable, "-m", "modelci", *step.split()], cwd=bert_repo, capture_output=True,
                              text=True)
        assert done.returncode == 0, f"{step}: {done.stderr}"
    return bert_repo


@pytest.fixture
def repo(bert_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the module's repository, with no outputs; the working directory."""
    folder = shutil.copytree(bert_repo, tmp_path / "reviews", ignore=shutil.ignore_patterns(".modelci"))
    monkeypatch.chdir(folder)
    return Path(folder)


def test_a_hugging_face_model_is_fine_tuned_and_exported_with_its_tokenizer(trained: Path) -> None:
    out = trained / OUT
    log = json.loads((out / "train-log.json").read_text())
    assert log["framework"] == "huggingface"
    assert (log["text"]["column"], log["text"]["max_tokens"]) == ("review", MAX_TOKENS)
    assert len(log["epochs"]) == 2
    model = onnx.load(out / "model.onnx")
    assert [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input] == [("review", onnx.TensorProto.STRING)]
    assert any(node.op_type == "Loop" for node in model.graph.node)
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"]
    assert parity["rows"] == 100
    # the parity's texts were cut: most reviews are longer than MAX_TOKENS tokens
    tokenizer = BertTokenizerFast.from_pretrained(trained / "tokenizer")
    evaluation = pd.read_parquet(trained / "data" / "eval.parquet")
    assert sum(len(ids) > MAX_TOKENS for ids in tokenizer(evaluation["review"].tolist())["input_ids"]) > 50
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows"] == 100


def test_the_graphs_tokenizer_gives_the_tokenizers_own_ids(trained: Path) -> None:
    from onnx import helper

    from modelci.frameworks.text.tokenizer_graph import IDS

    model = onnx.load(trained / OUT / "model.onnx")
    model.graph.output.append(helper.make_tensor_value_info(IDS, onnx.TensorProto.INT64, [None, None]))
    session = extensions.inference_session(model.SerializeToString(), ort.SessionOptions())
    texts = ["Really GREAT kettle!", "Ünïcode CAFÉ naïve 日本語 🙂 x_1", "", "   ", "word " * 40, "don't-stop ²",
             # characters the tokenizer's normalizer drops or reads as spaces (the graph cleans them first)
             "\ufeffthe kettle", "the\u2028kettle", "a\u200bb kettle", "x\ufffdy kettle", "bell\x07char",
             "tab\tnew\nline"]
    (ids,) = session.run([IDS], {"review": np.array(texts, dtype=object)[:, None]})
    tokenizer = BertTokenizerFast.from_pretrained(trained / "tokenizer")
    expected = tokenizer(texts, truncation=True, max_length=MAX_TOKENS, padding=True, return_tensors="np")
    assert np.array_equal(ids, expected["input_ids"])


def test_the_server_answers_raw_text_as_onnx_runtime_does(trained: Path) -> None:
    from test_serve import start

    texts = ["Really great kettle! Honestly lovely.", "It is broken. Awful backpack!", ""]
    expected = OnnxModel(trained / OUT / "model.onnx").session.run(
        None, {"review": np.array(texts, dtype=object)[:, None]})[0]
    running = start(trained / OUT / "model.onnx", name="reviews")
    try:
        found = running.infer({"inputs": [{"name": "review", "shape": [3, 1], "datatype": "BYTES", "data": texts}]},
                              model="reviews")
        assert found.status_code == 200, found.text
        (output,) = found.json()["outputs"]
        assert np.allclose(np.reshape(output["data"], output["shape"]), expected, atol=1e-6)
        # a multiclass model's rows by predicted class, which a canary's predictions figure compares
        counted = {line.split('class="')[1].split('"')[0]: float(line.split()[-1]) for line in
                   requests.get(f"{running.url}/metrics", timeout=5).text.splitlines()
                   if line.startswith("modelci_predicted_class_rows_total{")}
        assert counted == {str(c): float(n) for c, n in enumerate(np.bincount(expected.argmax(axis=1))) if n}
    finally:
        running.process.terminate()  # NOTE: by its PID
        running.process.wait(timeout=30)


def test_without_onnxruntime_extensions_the_model_names_the_extra(trained: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extensions, "library_path", lambda: None)
    with pytest.raises(UsageError) as refused:
        OnnxModel(trained / OUT / "model.onnx")
    assert "onnxruntime-extensions' operators" in refused.value.message
    assert "modelci[text]" in (refused.value.hint or "")


def test_a_tokenizer_the_graph_cannot_carry_is_refused_before_training(cli: Callable[..., Result], repo: Path) -> None:
    unigram = Tokenizer(models.Unigram())  # NOTE: SentencePiece's kind (XLM-RoBERTa, ALBERT, T5...)
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram.train_from_iterator(["some texts to learn from"], trainers.UnigramTrainer(
        special_tokens=["<pad>", "<unk>"], unk_token="<unk>"))
    PreTrainedTokenizerFast(tokenizer_object=unigram, pad_token="<pad>", unk_token="<unk>").save_pretrained(
        repo / "tokenizer")
    (repo / "model.py").write_text(FACTORY.replace("BertTokenizerFast.from_pretrained", "AutoTokenizer.from_pretrained")
                                   .replace("BertTokenizerFast\n", "BertTokenizerFast, AutoTokenizer\n"))
    found = cli("train")
    assert found.code == 2, found.err
    assert "the factory's tokenizer is a Unigram tokenizer; modelci puts a WordPiece tokenizer of BERT's kind" \
        in found.err
    assert not (OUT / "transformer.pt").exists()


def test_a_model_with_other_labels_than_the_task_is_exit_2(cli: Callable[..., Result], repo: Path) -> None:
    (repo / "model.py").write_text(FACTORY)
    configure(repo, model__params={"hidden": 16, "layers": 1, "labels": 5})
    found = cli("train")
    assert found.code == 2, found.err
    assert "this task needs (2, 3)" in found.err
    assert "num_labels=output_dim" in found.err


@pytest.mark.slow
def test_run_publishes_a_hugging_face_model_and_a_change_gets_a_paired_verdict(cli: Callable[..., Result],
                                                                              repo: Path) -> None:
    config = yaml.safe_load((repo / "modelci.yaml").read_text())
    config["gate"] = [{"metric": "accuracy", "min": 0.0, "max_drop": 0.5}]  # NOTE: a tiny model, 2 epochs
    (repo / "modelci.yaml").write_text(yaml.safe_dump(config))
    (repo / ".gitignore").write_text(".modelci/\n__pycache__/\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "model")
    published = cli("run", "--publish")
    assert published.code == 0, published.err
    configure(repo, model__params={"hidden": 8, "layers": 1})  # a narrower model
    git(repo, "commit", "-qam", "a narrower model")
    changed = cli("run")
    assert changed.code in (0, 1), changed.err
    comparison = json.loads((OUT / "comparison.json").read_text())
    assert comparison["baseline_status"] == "compared"
    assert comparison["rows"] == 100
    assert {m["name"] for m in comparison["metrics"]} >= {"accuracy", "f1_macro"}
    assert comparison["flips"]["rows"] >= 0


def test_int8_quantization_of_a_hugging_face_model_keeps_its_tokenizer(cli: Callable[..., Result],
                                                                      repo: Path) -> None:
    configure(repo, train__epochs=1, export__quantize="int8")
    assert cli("train").code == 0
    exported = cli("export")
    assert exported.code == 0, exported.err
    quantization = json.loads((OUT / "parity.json").read_text())["quantization"]
    assert quantization["int8_bytes"] < quantization["fp32_bytes"]
    assert OnnxModel(OUT / "model.onnx").predict(pd.read_parquet(repo / "data" / "eval.parquet")).shape == (100, 3)


def test_a_folder_that_is_not_a_hugging_face_model_is_exit_2(cli: Callable[..., Result], repo: Path) -> None:
    (repo / "not-a-model").mkdir()
    (repo / "not-a-model" / "notes.txt").write_text("weights go here\n")
    (repo / "model.py").write_text(FACTORY.replace("    return BertForSequenceClassification(config), tokenizer",
                                                   "    model = BertForSequenceClassification.from_pretrained("
                                                   "HERE / 'not-a-model', num_labels=output_dim)\n"
                                                   "    return model, tokenizer"))
    found = cli("train")
    assert found.code == 2, found.err
    assert "model.factory: model.py:build raised at" in found.err
    assert "not-a-model" in found.err
    assert "Traceback" not in found.err


@pytest.mark.parametrize("max_tokens", [1, 2])
def test_max_tokens_too_few_for_the_special_tokens_is_exit_2(cli: Callable[..., Result], repo: Path,
                                                             max_tokens: int) -> None:
    configure(repo, data__text={"max_tokens": max_tokens})
    found = cli("train")
    assert found.code == 2, found.err
    assert f"data.text.max_tokens: {max_tokens}, fewer than the 3 a text takes" in found.err


def test_a_word_with_a_character_outside_the_vocabulary_is_the_one_known_difference(trained: Path) -> None:
    # the extensions' operator gives the pieces it found and [UNK], the tokenizer one [UNK] for the word
    # (README, Hugging Face text models): pinned here, so that a fix shows
    from onnx import helper

    from modelci.frameworks.text.tokenizer_graph import IDS

    model = onnx.load(trained / OUT / "model.onnx")
    model.graph.output.append(helper.make_tensor_value_info(IDS, onnx.TensorProto.INT64, [None, None]))
    session = extensions.inference_session(model.SerializeToString(), ort.SessionOptions())
    tokenizer = BertTokenizerFast.from_pretrained(trained / "tokenizer")
    (ids,) = session.run([IDS], {"review": np.array([["kettle🙂"]], dtype=object)})
    kettle, unknown = tokenizer.convert_tokens_to_ids("kettle"), tokenizer.unk_token_id
    assert ids[0].tolist() == [tokenizer.cls_token_id, kettle, unknown, tokenizer.sep_token_id]
    assert tokenizer("kettle🙂")["input_ids"] == [tokenizer.cls_token_id, unknown, tokenizer.sep_token_id]


@pytest.fixture(scope="module")
def roberta(bert_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reviews with a tiny RoBERTa and a byte-level BPE tokenizer trained on them, as RoBERTa's is, trained
    and exported."""
    from tokenizers import AddedToken, ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    folder = shutil.copytree(bert_repo, tmp_path_factory.mktemp("roberta") / "reviews",
                             ignore=shutil.ignore_patterns(".modelci", "tokenizer"))
    found = ByteLevelBPETokenizer()
    found.train_from_iterator(pd.read_parquet(folder / "data" / "train.parquet")["review"], vocab_size=400,
                              special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    found.save(str(folder / "bpe.json"))
    RobertaTokenizerFast(tokenizer_file=str(folder / "bpe.json"),
                         mask_token=AddedToken("<mask>", lstrip=True)).save_pretrained(folder / "roberta-tokenizer")
    (folder / "model.py").write_text(ROBERTA)
    configure(folder, model__params=None, train__epochs=1)
    for step in ("train", "export"):
        done = subprocess.run([sys.executable, "-m", "modelci", step], cwd=folder, capture_output=True, text=True)
        assert done.returncode == 0, f"{step}: {done.stderr}"
    return Path(folder)


def test_a_roberta_model_is_exported_with_its_byte_level_tokenizer(roberta: Path) -> None:
    from onnx import helper
    from transformers import RobertaTokenizerFast

    from modelci.frameworks.text.tokenizer_graph import IDS

    log = json.loads((roberta / OUT / "train-log.json").read_text())
    assert log["text"]["tokenizer"].startswith("RobertaTokenizer")
    assert json.loads((roberta / OUT / "parity.json").read_text())["passed"]
    model = onnx.load(roberta / OUT / "model.onnx")
    model.graph.output.append(helper.make_tensor_value_info(IDS, onnx.TensorProto.INT64, [None, None]))
    session = extensions.inference_session(model.SerializeToString(), ort.SessionOptions())
    (ids,) = session.run([IDS], {"review": np.array(AWKWARD, dtype=object)[:, None]})
    tokenizer = RobertaTokenizerFast.from_pretrained(roberta / "roberta-tokenizer")
    expected = tokenizer(AWKWARD, truncation=True, max_length=MAX_TOKENS, padding=True, return_tensors="np")
    assert np.array_equal(ids, expected["input_ids"])


def test_max_tokens_beyond_robertas_positions_is_exit_2(cli: Callable[..., Result], roberta: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(shutil.copytree(roberta, tmp_path / "reviews", ignore=shutil.ignore_patterns(".modelci")))
    configure(Path.cwd(), data__text={"max_tokens": 33})
    found = cli("train")
    assert found.code == 2, found.err
    assert "data.text.max_tokens: 33, more than the model's 32 positions" in found.err
