"""Benchmark the exported text model, its tokenizer in the ONNX graph, against the `transformers` pipeline.

    python benchmarks/text_serve/run.py [--texts 1024] [--rounds 5] [--train 3000] [--epochs 2]

The small BERT and WordPiece tokenizer of benchmarks/text_train (examples/reviews' generated data), fine-tuned by
`modelci train` for `--epochs` epochs and exported by `modelci export` (after `modelci data check`, which writes the
data profile the server measures online drift against), in a temporary folder. The same `--texts` evaluation
reviews go, `batch` texts a call, at batch 1 and batch 32, to:

- ONNX Runtime, tokenizer in the graph: the exported model (texts in, probabilities out) in one session of
  `modelci.evaluate.onnx_model.OnnxModel` (`extensions.inference_session`, ONNX Runtime's default threads), in this
  process;
- the same exported with `export.quantize: int8` (ONNX Runtime's dynamic quantization; an option of modelci's,
  judged by the gate, not the default artifact);
- the transformers pipeline: `pipeline("text-classification", model=..., tokenizer=...)` on the same fine-tuned
  weights (read back by modelci from its checkpoint), CPU, `truncation=True, max_length=...`, `top_k=None` (every
  class's probability, as the ONNX model gives), `batch_size` the batch;
- `modelci serve` over HTTP: one JSON request of BYTES per batch, back to back on one keep-alive connection
  (benchmarks/serve's client), the server in a process of its own;

and, as diagnostics of where the time goes: ONNX Runtime on the model alone (the graph from the token ids on, fed
ids the Hugging Face tokenizer made before the clock started), the tokenizer graph alone (texts to ids), the Hugging
Face (Rust) tokenizer alone, and PyTorch's forward pass alone (the pipeline's model on ids made beforehand).
The pipeline's, PyTorch's, the model-alone's and the server's answers are checked against the exported model's
first. Each (contender, batch) runs over all the texts once as a warm-up, then the contenders take turns, `--rounds`
rounds (a pause before each turn, so that one's idle threads do not take the cores from the next); each one's
fastest round counts (the one the rest of the machine disturbed least; every round in results.json): its texts/s
and the median and p99 latency of its calls (the median round's texts/s is shown too). Writes results.json and
RESULTS.md next to this file.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = "reviews"
INFER = f"/v2/models/{MODEL}/infer"
BATCHES = (1, 32)
PAUSE = 0.3  # seconds between two contenders' turns
TARGET = 3.0  # the exported model's texts/s over the pipeline's, at least, at each batch size
ONNX, PIPELINE, HTTP = "ONNX Runtime, tokenizer in the graph", "transformers pipeline", "modelci serve over HTTP"
INT8 = "ONNX Runtime, tokenizer in the graph, int8 (`export.quantize: int8`)"
TORCH = "diagnostic: PyTorch, the model's forward pass alone on token ids"
IDS_ONLY, TOKENIZER_GRAPH, HF_TOKENIZER = ("diagnostic: ONNX Runtime, model alone on token ids",
                                           "diagnostic: the tokenizer graph alone", "diagnostic: the Hugging Face "
                                           "tokenizer alone")
Call = Callable[[int], Any]  # runs the call for batch number i (of the texts cut into batches)


def _module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # NOTE: its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


train_bench = _module("text_train_bench", HERE.parent / "text_train" / "run.py")  # the model, data and tokenizer
serve_bench = _module("serve_bench", HERE.parent / "serve" / "run.py")  # the HTTP client, server start and stop
serve_bench.MODEL, serve_bench.INFER = MODEL, INFER  # NOTE: its `start` and `http_requests` read them


def export_model(work: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """text_train's repository, trained and exported by modelci: the ONNX file (the data profile beside it), and the
    same exported with `export.quantize: int8`."""
    setup = argparse.Namespace(train=args.train, batch=32, max_tokens=args.max_tokens, repeat=args.epochs - 1)
    train_bench.repository(work, setup, evaluation=args.texts)
    quiet = {"cwd": work, "check": True, "stdout": subprocess.DEVNULL}
    for step in ("data check", "train", "export"):
        subprocess.run([sys.executable, "-m", "modelci", *step.split()], **quiet)  # type: ignore[call-overload]
    out, int8 = work / ".modelci" / "out", work / ".modelci" / "int8"
    shutil.copytree(out, int8)
    config = work / "modelci-int8.yaml"
    config.write_text((work / "modelci.yaml").read_text() + "export:\n  quantize: int8\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "modelci", "export", "--config", str(config), "--out", str(int8)],
                   **quiet)  # type: ignore[call-overload]
    return out / "model.onnx", int8 / "model.onnx"


def part(path: Path, inputs: list[str], outputs: list[str], out: Path) -> Path:
    """The graph between `inputs` and `outputs` of the model at `path`, as a model of its own."""
    import onnx.utils

    onnx.utils.extract_model(str(path), str(out), inputs, outputs, check_model=False)
    return out


# --- the contenders ----------------------------------------------------------------------------------------


class OnnxSessions:
    """The exported model in one session, its int8 export in another, and the diagnostics' parts of the first: made
    once, for every batch size."""

    def __init__(self, path: Path, int8: Path) -> None:
        from modelci.evaluate.onnx_model import OnnxModel
        from modelci.frameworks.text.tokenizer_graph import IDS

        self.model, self.quantized = OnnxModel(path), OnnxModel(int8)
        self.column = self.model.inputs[0].name
        self.network = _session(part(path, [IDS], [self.model.output], path.with_name("network.onnx")))
        self.tokens = _session(part(path, [self.column], [IDS], path.with_name("tokenizer.onnx")))

    def calls(self, batches: list[list[str]], tokenizer: Any, max_tokens: int) -> dict[str, Call]:
        """Each contender's call for batch i, its inputs prepared for `batches`."""
        from modelci.frameworks.text.tokenizer_graph import IDS

        column, texts = self.column, [np.array(b, dtype=object)[:, None] for b in batches]
        ids = [tokenizer(b, truncation=True, max_length=max_tokens, padding=True, return_tensors="np")["input_ids"]
               for b in batches]
        return {
            ONNX: lambda i: self.model.session.run(None, {column: texts[i]})[0],
            INT8: lambda i: self.quantized.session.run(None, {column: texts[i]})[0],
            IDS_ONLY: lambda i: self.network.run(None, {IDS: ids[i]})[0],
            TOKENIZER_GRAPH: lambda i: self.tokens.run(None, {column: texts[i]})[0],
            HF_TOKENIZER: lambda i: tokenizer(batches[i], truncation=True, max_length=max_tokens, padding=True,
                                              return_tensors="np")["input_ids"],
        }


def _session(path: Path) -> Any:
    """A part of the model in ONNX Runtime, with the extensions' operators, set as OnnxModel sets its session."""
    import onnxruntime as ort

    from modelci.evaluate.extensions import inference_session

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return inference_session(str(path), options)


class TorchModel:
    """The transformers pipeline on the fine-tuned weights modelci saved (read back from its checkpoint): made once,
    for every batch size."""

    def __init__(self, work: Path) -> None:
        from transformers import pipeline

        from modelci.config import load_config
        from modelci.frameworks import huggingface
        from modelci.frameworks.text.transformer import load_checkpoint

        checkpoint = work / ".modelci" / "out" / huggingface.CHECKPOINT
        scorer, _, _ = load_checkpoint(checkpoint, load_config(work / "modelci.yaml"))
        self.classify = pipeline("text-classification", model=scorer.net.model, tokenizer=scorer.tokenizer,
                                 device="cpu")
        config = self.classify.model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]

    def calls(self, batches: list[list[str]], max_tokens: int) -> dict[str, Call]:
        """The pipeline (probabilities per text, in label order) and, a diagnostic, the same model's forward pass
        alone on ids made beforehand."""
        import torch

        classify, labels = self.classify, self.labels
        encoded = [classify.tokenizer(b, truncation=True, max_length=max_tokens, padding=True, return_tensors="pt")
                   for b in batches]

        def call(i: int) -> np.ndarray:
            found = classify(batches[i], batch_size=len(batches[i]), truncation=True, max_length=max_tokens,
                             top_k=None)
            return np.array([[{s["label"]: s["score"] for s in text}[label] for label in labels] for text in found])

        @torch.inference_mode()
        def forward(i: int) -> np.ndarray:
            logits = classify.model(input_ids=encoded[i]["input_ids"],
                                    attention_mask=encoded[i]["attention_mask"]).logits
            return np.asarray(logits.softmax(-1).numpy())

        return {PIPELINE: call, TORCH: forward}


class Http:
    """`modelci serve` in a process of its own, and the requests for `batches`, one per batch."""

    def __init__(self, path: Path, batches: list[list[str]], column: str) -> None:
        port = serve_bench.free_port()
        self.server = serve_bench.Server(HTTP, "`modelci serve` (defaults), JSON BYTES",
                                         [sys.executable, "-m", "modelci", "serve", "--model", str(path), "--name",
                                          MODEL, "--port", str(port)], port=port, metrics=True)
        self.bodies = [json.dumps({"inputs": [{"name": column, "shape": [len(b), 1], "datatype": "BYTES",
                                               "data": b}]}).encode() for b in batches]
        self.process = serve_bench.start(self.server)
        self.requests = serve_bench.http_requests(port, self.bodies)

    def answer(self, i: int) -> np.ndarray:
        found = json.loads(urllib_post(self.server.port, self.bodies[i]))["outputs"][0]
        return np.reshape(found["data"], found["shape"])

    def run(self) -> tuple[list[float], float]:
        """Every batch once, back to back on one connection: (latencies in s, seconds)."""
        import uvloop

        loop = uvloop.new_event_loop()
        try:
            latencies, errors, seconds = loop.run_until_complete(
                serve_bench.load(self.server.port, self.requests, 1, len(self.requests)))
        finally:
            loop.close()
        if errors:
            raise RuntimeError(f"modelci serve answered {errors} requests with an error")
        return [x / 1e9 for x in latencies], seconds

    def stop(self) -> None:
        serve_bench.stop(self.process)


def urllib_post(port: int, body: bytes) -> bytes:
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{INFER}", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        found: bytes = response.read()
        return found


def timed(call: Call, count: int) -> tuple[list[float], float]:
    """Every batch once, one call each: (latencies in s, seconds)."""
    latencies = []
    began = time.perf_counter()
    for i in range(count):
        start = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - start)
    return latencies, time.perf_counter() - began


# --- measuring ---------------------------------------------------------------------------------------------


def check(name: str, got: np.ndarray, want: np.ndarray, atol: float = 1e-5) -> None:
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=atol):
        raise RuntimeError(f"{name} answered {got[:2]}; the exported model {want[:2]}")


def measure(work: Path, paths: tuple[Path, Path], texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(work / "tokenizer")
    sessions, torch_model = OnnxSessions(*paths), TorchModel(work)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for size in BATCHES:
        batches = [texts[first:first + size] for first in range(0, len(texts), size)]
        calls = sessions.calls(batches, tokenizer, args.max_tokens) | torch_model.calls(batches, args.max_tokens)
        http = Http(paths[0], batches, "review")
        try:
            for i in (0, len(batches) - 1):
                want = calls[ONNX](i)
                check(PIPELINE, calls[PIPELINE](i), want)
                check(TORCH, calls[TORCH](i), want)
                check(IDS_ONLY, calls[IDS_ONLY](i), want)
                check(HTTP, http.answer(i), want)
                # NOTE: int8 changes the outputs a little (parity.json records how much): the same model, roughly
                check(INT8, calls[INT8](i), want, atol=0.05)
            count = len(batches)
            runners: dict[str, Callable[[], tuple[list[float], float]]] = {
                name: (lambda call=call, count=count: timed(call, count)) for name, call in calls.items()}
            runners[HTTP] = http.run
            for run in runners.values():
                run()  # NOTE: a warm-up pass over every batch, not counted
            for _ in range(args.rounds):
                for name, run in runners.items():
                    # NOTE: ONNX Runtime's and torch's idle threads spin a while after a call, taking the cores
                    # from whatever runs next in this process: a pause lets them sleep before the next turn
                    time.sleep(PAUSE)
                    latencies, seconds = run()
                    ms = np.array(latencies) * 1e3
                    found = {"texts": len(texts), "calls": len(batches), "seconds": round(seconds, 4),
                             "texts_per_s": round(len(texts) / seconds, 1),
                             "p50_ms": round(float(np.percentile(ms, 50)), 3),
                             "p99_ms": round(float(np.percentile(ms, 99)), 3)}
                    runs.setdefault(name, {}).setdefault(str(size), []).append(found)
                    print(f"  batch {size:>2}  {name:55} {found['texts_per_s']:9,.0f} texts/s  "
                          f"p50 {found['p50_ms']:7.2f} ms", flush=True)
        finally:
            http.stop()
    return runs


def summary(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Each (contender, batch)'s fastest round, the one the rest of the machine disturbed least (its texts/s and
    its calls' median and p99 latency), and the median round's texts/s."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for name, sizes in runs.items():
        for size, rounds in sizes.items():
            best = max(rounds, key=lambda r: r["texts_per_s"])
            found.setdefault(name, {})[size] = {
                "texts_per_s": best["texts_per_s"], "p50_ms": best["p50_ms"], "p99_ms": best["p99_ms"],
                "median_round_texts_per_s": round(float(np.median([r["texts_per_s"] for r in rounds])), 1)}
    return found


def targets(results: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    found = []
    for name, what in ((ONNX, "ONNX with the tokenizer in the graph"),
                       (INT8, "the same exported with `export.quantize: int8` (an option, not the default)")):
        for size in map(str, BATCHES):
            ours, theirs = results[name][size]["texts_per_s"], results[PIPELINE][size]["texts_per_s"]
            found.append({"target": f"batch {size}: {what} ≥ {TARGET:g}× the pipeline's texts/s",
                          "value": f"{ours / theirs:.2f}× ({ours:,.0f} against {theirs:,.0f} texts/s)",
                          "pass": ours / theirs >= TARGET})
    return found


# --- results -----------------------------------------------------------------------------------------------


def write(result: dict[str, Any]) -> None:
    from machine import shared_note

    (HERE / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    m, s = result["machine"], result["setup"]
    lines = ["# text_serve benchmark results", "",
             f"{result['date']} on CPU ({m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}). "
             "benchmarks/text_train's BERT (hidden 128, 2 layers, 2 heads, intermediate 256) and WordPiece tokenizer "
             f"({s['vocabulary']} tokens), fine-tuned by `modelci train` for {s['epochs']} epochs on {s['train']:,} "
             "generated reviews and exported by `modelci export` (the tokenizer in the graph: onnxruntime-extensions' "
             f"BertTokenizer in a Loop), texts cut at {s['max_tokens']} tokens. {s['texts']:,} evaluation reviews "
             f"(mean {s['mean_tokens']:.1f} tokens; {s['padded_tokens_per_text']['32']:.1f} a text at batch 32, "
             "padded to the batch's longest), `batch` texts a call. Each (contender, batch) is warmed up over every "
             f"text, then the contenders take turns, {s['rounds']} rounds, a pause before each turn; each one's "
             "fastest round is shown (the one the rest of the machine disturbed least; every round in results.json), "
             "and the median round's texts/s beside it. The in-process rows run in this one "
             "process, one call at a time, ONNX Runtime with its default threads (2) and torch with its own (2); "
             "`modelci serve` runs in a process of its own (its defaults), one request at a time on one keep-alive "
             f"connection. {shared_note(result['load_average_1min'])}Generated by `run.py`; every round in "
             "results.json.", "",
             "| contender | batch | texts/s | p50 ms per call | p99 ms per call | median round's texts/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, sizes in result["results"].items():
        for size, x in sizes.items():
            lines.append(f"| {name} | {size} | {x['texts_per_s']:,.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | "
                         f"{x['median_round_texts_per_s']:,.0f} |")
    from machine import target_rows

    lines += ["", *target_rows(result["targets"])]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + "."]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1024, help="evaluation reviews sent (a multiple of 32)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--train", type=int, default=3000, help="training reviews for the fine-tuning")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from importlib.metadata import version

    import pandas as pd
    from machine import describe

    load_before = os.getloadavg()[0]  # NOTE: the machine is shared; its load explains a run's outliers
    with tempfile.TemporaryDirectory(prefix="modelci-text-serve-") as folder:
        work = Path(folder)
        paths = export_model(work, args)
        texts = [str(t) for t in pd.read_parquet(work / "data" / "eval.parquet")["review"]][:args.texts]
        from transformers import BertTokenizerFast

        tokenizer = BertTokenizerFast.from_pretrained(work / "tokenizer")
        lengths = [min(len(x), args.max_tokens) for x in tokenizer(texts)["input_ids"]]
        padded = {str(size): float(np.mean([max(lengths[first:first + size]) for first in range(0, len(texts), size)]))
                  for size in BATCHES}  # NOTE: the tokens a text takes in its batch, padded to the batch's longest
        runs = measure(work, paths, texts, args)
    results = summary(runs)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": describe(),
              "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
              "versions": {name: version(name) for name in ("modelci", "onnxruntime", "onnxruntime-extensions",
                                                            "torch", "transformers", "tokenizers")},
              "setup": {"texts": len(texts), "rounds": args.rounds, "train": args.train, "epochs": args.epochs,
                        "max_tokens": args.max_tokens, "vocabulary": len(tokenizer),
                        "mean_tokens": float(np.mean(lengths)), "padded_tokens_per_text": padded},
              "results": results, "targets": targets(results), "runs": runs}
    write(result)


if __name__ == "__main__":
    main()
