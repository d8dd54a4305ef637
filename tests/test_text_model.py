"""Text models (issue 19, the light model): a PyTorch embedding bag over a vocabulary learnt from the training
texts, trained, exported with the tokenizer in the ONNX graph, parity-checked, evaluated and served.

On examples/reviews' generator (a small data set written in tmp_path); the tokenizer's edge cases are
checked against ONNX Runtime directly.
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
import torch

from conftest import ROOT, Result
from modelci.config import TextConfig
from modelci.evaluate.onnx_model import OnnxModel
from modelci.frameworks.text.vocabulary import Vocabulary
from test_image_train import configure

EXAMPLE = ROOT / "examples" / "reviews"
OUT = Path(".modelci") / "out"


@pytest.fixture(scope="module")
def reviews_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's data: 600 training and 200 evaluation reviews."""
    folder = tmp_path_factory.mktemp("reviews") / "data"
    subprocess.run([sys.executable, str(EXAMPLE / "generate_data.py"), "--out", str(folder), "--train", "600",
                    "--eval", "200"], check=True, capture_output=True)
    return folder


def copy_example(folder: Path, data: Path, **changes: object) -> Path:
    """The example with the small data and 4 epochs (and `changes`), at `folder`."""
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("data", ".modelci", "__pycache__"))
    shutil.copytree(data, folder / "data")
    configure(folder, train__epochs=4, **changes)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, reviews_data: Path) -> Path:
    """The example trained, exported and evaluated once for the module; its folder."""
    folder = copy_example(tmp_path_factory.mktemp("text-model") / "reviews", reviews_data)
    for step in ("train", "export", "evaluate"):
        done = subprocess.run([sys.executable, "-m", "modelci", *step.split()], cwd=folder, capture_output=True,
                              text=True)
        assert done.returncode == 0, f"{step}: {done.stderr}"
        (folder / f"{step}.log").write_text(done.stderr)
    return folder


@pytest.fixture
def repo(tmp_path: Path, reviews_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example with the small data, 4 epochs; the working directory."""
    folder = copy_example(tmp_path / "reviews", reviews_data)
    monkeypatch.chdir(folder)
    return folder


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model.pt", weights_only=True)["state_dict"]  # type: ignore[no-any-return]


def test_a_text_model_trains_and_exports_with_its_tokenizer_in_the_graph(trained: Path) -> None:
    out = trained / OUT
    assert "left out of the features: product" in (trained / "train.log").read_text()
    log = json.loads((out / "train-log.json").read_text())
    assert log["framework"] == "pytorch"
    assert (log["text"]["column"], log["text"]["max_tokens"]) == ("review", 64)
    assert 0 <= log["text"]["unknown_share"] < 0.05  # the generator's words are few, and all seen in training

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert (given.name, given.type, given.shape[1:]) == ("review", "tensor(string)", [1])
    described = json.loads(session.get_modelmeta().custom_metadata_map["modelci.text"])
    assert (described["input"], described["max_tokens"]) == ("review", 64)
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"]
    assert parity["rows"] == 200
    # the model learnt the reviews: ONNX Runtime's accuracy on the evaluation texts, from the raw strings
    evaluation = pd.read_parquet(trained / "data" / "eval.parquet")
    model = OnnxModel(out / "model.onnx")
    predicted = np.asarray(model.classes)[model.predict(evaluation).argmax(axis=1)]
    assert float(np.mean(predicted == evaluation["sentiment"].to_numpy())) > 0.6
    # the table's other columns slice the evaluation
    metrics = json.loads((out / "metrics.json").read_text())
    assert {s["value"] for s in metrics["slices"]["product"]} == {"headphones", "kettle", "backpack", "keyboard"}


def test_the_graphs_tokenizer_reads_words_as_the_vocabulary_does(tmp_path: Path) -> None:
    # the exported graph and the Python tokenizer, on the texts where they could part: case, punctuation,
    # Unicode letters and numbers, underscores, empty and blank texts, a text longer than max_tokens
    from modelci.frameworks.text import network

    texts = ["Great KETTLE, great!", "café CAFÉ École école", "x_1 2nd ²³ ½ naïve", "", "   \t\n", "don't-stop",
             " ".join(f"w{i}" for i in range(40)), "日本語 テキスト", "emoji 🙂 ok"]
    vocabulary = Vocabulary.learn(texts[:3] + texts[5:], TextConfig(max_tokens=7, vocabulary=50))
    scorer = _identity_scorer(vocabulary)
    model, _ = network.to_onnx(scorer, 18, "probabilities")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = _graph_ids(session, model, texts)
    expected = vocabulary.batch(texts)
    assert ids.shape[0] == len(texts)
    width = max(ids.shape[1], expected.shape[1])
    assert np.array_equal(np.pad(ids, ((0, 0), (0, width - ids.shape[1]))),
                          np.pad(expected, ((0, 0), (0, width - expected.shape[1]))))


def _identity_scorer(vocabulary: Vocabulary) -> object:
    """A scorer whose network hands the ids through, to read what the graph's tokenizer gives it."""
    from modelci.features import Target
    from modelci.frameworks.text.network import TextScorer

    class Ids(torch.nn.Module):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return ids.float()

    target = Target.fit(pd.Series(["a", "b"]), "multiclass")
    return TextScorer(Ids(), target, vocabulary, "text")


def _graph_ids(session: ort.InferenceSession, model: object, texts: list[str]) -> np.ndarray:
    """The word ids the exported graph computes (its network's input), for each text."""
    from onnx import helper

    from modelci.frameworks.text.network import IDS

    graph = model.graph  # type: ignore[attr-defined]
    graph.output.append(helper.make_tensor_value_info(IDS, 7, [None, None]))
    probe = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    outputs = probe.run([IDS], {"text": np.array(texts, dtype=object)[:, None]})
    return np.asarray(outputs[0])


def test_the_server_answers_raw_text_as_onnx_runtime_does(trained: Path) -> None:
    import tritonclient.http as triton

    from test_serve import start

    texts = ["Really great kettle! Honestly lovely.", "It is broken. Awful backpack!", "", "Ünïcode and NEW words"]
    session = ort.InferenceSession(str(trained / OUT / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"review": np.array(texts, dtype=object)[:, None]})[0]
    running = start(trained / OUT / "model.onnx", name="reviews")
    try:
        found = running.infer({"inputs": [{"name": "review", "shape": [len(texts), 1], "datatype": "BYTES",
                                           "data": texts}]}, model="reviews")
        assert found.status_code == 200, found.text
        (output,) = found.json()["outputs"]
        assert np.allclose(np.reshape(output["data"], output["shape"]), expected, atol=1e-6)
        # Triton's own client, with the binary tensor data extension
        client = triton.InferenceServerClient(running.url.removeprefix("http://"))
        given = triton.InferInput("review", [len(texts), 1], "BYTES")
        given.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object)[:, None], binary_data=True)
        answered = client.infer("reviews", [given]).as_numpy("probabilities")
        assert np.allclose(answered, expected, atol=1e-6)
    finally:
        running.process.terminate()  # NOTE: by its PID
        running.process.wait(timeout=30)


def test_the_same_seed_gives_the_same_weights(cli: Callable[..., Result], repo: Path) -> None:
    configure(repo, train__epochs=2)
    first = cli("train")
    assert first.code == 0, first.err
    before = weights(OUT)
    again = cli("train")
    assert again.code == 0, again.err
    after = weights(OUT)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(("change", "problem"), [
    pytest.param({"data__text": {"max_tokens": 0, "words": 3}}, "data.text.max_tokens: expected a whole number",
                 id="bad-settings"),
    pytest.param({"data__text": {"vocabulary": 2.5}}, "data.text.vocabulary: expected a whole number", id="fraction"),
    pytest.param({"data__image": {"size": 32}}, "data.image and data.text are both set", id="images-and-texts"),
    pytest.param({"data__schema": None}, "no text column 'text' (columns: review, sentiment, product)",
                 id="no-text-column"),
    pytest.param({"model__params": {"hidden": 3}}, "cannot be called as build(vocabulary_size, output_dim, **params)",
                 id="factory-signature"),
])
def test_a_text_model_that_cannot_train_is_exit_2_naming_why(cli: Callable[..., Result], repo: Path,
                                                            change: dict, problem: str) -> None:  # type: ignore[type-arg]
    configure(repo, **change)
    found = cli("train")
    assert found.code == 2, found.err
    assert problem in found.err
    assert "Traceback" not in found.err


def test_a_factory_whose_network_does_not_fit_the_task_is_exit_2(cli: Callable[..., Result], repo: Path) -> None:
    (repo / "model.py").write_text("from torch import nn\n\n\ndef build(vocabulary_size, output_dim, **params):\n"
                                   "    return nn.Sequential(nn.Embedding(vocabulary_size, 4), nn.Flatten(), "
                                   "nn.LazyLinear(output_dim + 1))\n")
    found = cli("train")
    assert found.code == 2, found.err
    assert "this task needs (2, 3)" in found.err


@pytest.mark.slow
def test_run_publishes_a_text_model_and_a_changed_one_gets_a_paired_verdict(cli: Callable[..., Result],
                                                                           repo: Path) -> None:
    from conftest import git

    (repo / ".gitignore").write_text(".modelci/\n__pycache__/\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "model")
    published = cli("run", "--publish")
    assert published.code == 0, published.err
    assert json.loads((OUT / "comparison.json").read_text())["baseline_status"] == "no-baseline"

    configure(repo, model__params={"width": 8, "dropout": 0.1})  # a narrower network
    git(repo, "commit", "-qam", "a narrower network")
    changed = cli("run")
    assert changed.code in (0, 1), changed.err
    comparison = json.loads((OUT / "comparison.json").read_text())
    assert comparison["baseline_status"] == "compared"
    assert comparison["rows"] == 200
    rows = {m["name"]: m for m in comparison["metrics"]}
    assert rows["accuracy"]["verdict"] in {"improved", "unchanged", "worse-within-tolerance", "regressed",
                                           "inconclusive", "failed-floor"}
    # paired: both models' figures on the very same evaluation texts, each scored here from the raw strings
    frame = pd.read_parquet(repo / "data" / "eval.parquet")
    right = [np.asarray(model.classes)[model.predict(frame).argmax(axis=1)] == frame["sentiment"].to_numpy()
             for model in (OnnxModel(OUT / "model.onnx"), OnnxModel(OUT / "baseline" / "model.onnx"))]
    assert (rows["accuracy"]["candidate"], rows["accuracy"]["baseline"]) == pytest.approx(
        (float(right[0].mean()), float(right[1].mean())))
    report = (OUT / "report.md").read_text()
    assert "| product | texts |" in report  # the slices of the evaluation texts
    # the reviews whose predicted sentiment changed, the first few in the report with their text
    flips = comparison["flips"]
    assert flips["fixed"] + flips["broken"] + flips["other"] == flips["rows"]
    assert flips["rows"] == int(np.sum(np.argmax(OnnxModel(OUT / "model.onnx").predict(frame), axis=1)
                                       != np.argmax(OnnxModel(OUT / "baseline" / "model.onnx").predict(frame), axis=1)))
    assert f"Predictions that changed from the baseline's: {flips['rows']:,} texts" in report
    assert (OUT / "changed-predictions.csv").read_text().startswith("row,label,baseline,candidate,outcome,text")
    assert "| product | texts | changed | fixed | broken |" in report  # and where they changed
    assert sum(row["changed"] for row in flips["slices"]["product"]) == flips["rows"]


def test_int8_quantization_of_a_text_model_keeps_its_tokenizer(cli: Callable[..., Result], repo: Path) -> None:
    # the quantizer's shape inference once crashed the process on the Tokenizer's untyped output
    configure(repo, train__epochs=2, export__quantize="int8")
    assert cli("train").code == 0
    exported = cli("export")
    assert exported.code == 0, exported.err
    quantization = json.loads((OUT / "parity.json").read_text())["quantization"]
    assert quantization["int8_bytes"] < quantization["fp32_bytes"]
    session = ort.InferenceSession(str(OUT / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(string)"
    assert any(n.op_type == "DynamicQuantizeLinear" for n in onnx.load(OUT / "model.onnx").graph.node)


def test_the_server_measures_the_texts_drift_from_the_training_texts(trained: Path, tmp_path: Path) -> None:
    import requests

    from test_serve import series, start

    folder = tmp_path / "artifact"  # the model with the training texts' profile beside it, as in an artifact
    done = subprocess.run([sys.executable, "-m", "modelci", "data", "check", "--out", str(folder)], cwd=trained,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    shutil.copy(trained / OUT / "model.onnx", folder / "model.onnx")
    reviews = pd.read_parquet(trained / "data" / "train.parquet")["review"].tolist()
    running = start(folder, name="reviews")

    def send(texts: list[str]) -> dict[str, float]:
        for first in range(0, len(texts), 100):
            part = texts[first:first + 100]
            answered = running.infer({"inputs": [{"name": "review", "shape": [len(part), 1], "datatype": "BYTES",
                                                  "data": part}]}, model="reviews")
            assert answered.status_code == 200, answered.text
        found = series(requests.get(f"{running.url}/metrics", timeout=5).text)
        return {key.split('column="')[1].split('"')[0]: value for key, value in found.items()
                if key.startswith("modelci_input_drifted{")}

    try:
        drifted = send(reviews[:600])  # as the training texts: the same population
        assert set(drifted) == {"review.characters", "review.tokens", "review.token"}
        assert not any(drifted.values())
        # longer texts, in other words: a new product line written about in another language
        german = "Der Wasserkocher ist laut und das Gehäuse wird sehr heiß, leider."
        shifted = [f"{text} {german}" for text in reviews[:600]]
        drifted = send(shifted * 2)
        assert drifted["review.characters"] == 1
        assert drifted["review.token"] == 1
    finally:
        running.process.terminate()  # NOTE: by its PID
        running.process.wait(timeout=30)


def test_each_text_is_cut_before_the_batch_is_padded(tmp_path: Path) -> None:
    # one long text among short ones costs its own words, not rows times its words: the graph tokenizes the texts one
    # at a time (a Loop), each cut at max_tokens; a batch of texts without a word is one column of padding
    from modelci.frameworks.text import network

    vocabulary = Vocabulary.learn(["great kettle", "awful kettle"], TextConfig(max_tokens=4))
    model, _ = network.to_onnx(_identity_scorer(vocabulary), 18, "probabilities")
    assert not any(node.op_type == "Tokenizer" for node in model.graph.node)  # only inside the Loop's body
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    long_text = "great " * 200_000
    together = _graph_ids(session, model, [long_text, *[""] * 63])
    assert together.shape == (64, 4)
    assert np.array_equal(together[0], vocabulary.batch([long_text])[0])
    assert not together[1:].any()
    wordless = ["!!!", "👍", ""]
    assert _graph_ids(session, model, wordless).tolist() == [[0], [0], [0]]
    assert vocabulary.batch(wordless).tolist() == [[0], [0], [0]]


def test_a_network_that_cannot_read_one_word_texts_is_exit_2(cli: Callable[..., Result], repo: Path) -> None:
    # batches of similar lengths put the one-word texts together: a network must take a batch one id wide
    (repo / "model.py").write_text("from torch import nn\n\n\nclass Conv(nn.Module):\n"
                                   "    def __init__(self, size, out):\n        super().__init__()\n"
                                   "        self.e, self.c = nn.Embedding(size, 4), nn.Conv1d(4, out, 3)\n\n"
                                   "    def forward(self, ids):\n"
                                   "        return self.c(self.e(ids).transpose(1, 2)).mean(dim=2)\n\n\n"
                                   "def build(vocabulary_size, output_dim, **params):\n"
                                   "    return Conv(vocabulary_size, output_dim)\n")
    found = cli("train")
    assert found.code == 2, found.err
    assert "the model fails on word ids of shape (2, 1)" in found.err
    assert "and texts of one word" in found.err


def test_the_servers_text_statistics_count_every_word_and_keep_a_few() -> None:
    from modelci.data.text.tokens import words
    from modelci.serve.texts import WINDOW_WORDS, text_columns

    texts = np.array(["Great KETTLE, great!", "", "word " * 100_000, "x_1 café"], dtype=object)
    found = text_columns("review", texts)
    assert found["review.characters"].tolist() == [len(t) for t in texts]
    assert found["review.tokens"].tolist() == [len(words(t)) for t in texts]
    assert [len(w) for w in found["review.token"]] == [3, 0, WINDOW_WORDS, 2]
    assert found["review.token"][0] == ["great", "kettle", "great"]
