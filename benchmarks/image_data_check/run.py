"""Benchmark `modelci data check` over many small images against a plain Pillow loop that decodes and hashes each.

    python benchmarks/image_data_check/run.py [--images 100000] [--rounds 2] [--scratch /tmp/modelci-image-data-check]

The data: examples/shapes' generator, 32×32 PNG files, a folder per class (3 classes), `--images` of them
split 99:1 into data/train and data/eval; generated once into `--scratch` and reused by later runs. Two
sides read every file of both folders, each as a process of its own, taking turns, `--rounds` times:

- modelci: `modelci data check` as a user runs it (the schema's checks, duplicates and leakage by content
  hash, class balance, the profile of every image's statistics, data-report.json and data-profile.json);
- plain: `run.py --child plain DATA`, a Python loop that reads each file, hashes it (BLAKE2b, 16 bytes, as
  modelci does), decodes it with Pillow (`Image.open(...).load()`) and keeps the hashes in a dict (duplicates).

Each process is timed from start to exit by this one, and its peak memory is its own maximum resident set
size (`os.wait4`). The first round follows the generation (or a read of every file), so the page cache is
warm for both. Writes results.json and RESULTS.md next to this file.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent.parent / "examples" / "shapes"
CLASSES = ("circle", "square", "triangle")
EVAL_SHARE = 100  # one image in this many is an evaluation image
CHUNK = 2000  # images a generating process draws at a time


# --- the data ----------------------------------------------------------------------------------------------


def _draw(job: tuple[str, str, int, int]) -> None:
    """CHUNK images of one class into one folder, from a seed of their own (so every image differs)."""
    folder, kind, first, count = job
    sys.path.insert(0, str(EXAMPLE))
    import generate_data

    rng = np.random.default_rng([first, CLASSES.index(kind), 7])
    for number in range(first, first + count):
        generate_data.image(kind, rng).save(Path(folder) / kind / f"{kind}-{number:06d}.png")


def generate(data: Path, images: int) -> None:
    marker = data / f"complete-{images}"
    if marker.exists():
        return
    jobs = []
    for side, total in (("train", images - images // EVAL_SHARE), ("eval", images // EVAL_SHARE)):
        per_class = -(-total // len(CLASSES))
        for kind in CLASSES:
            (data / side / kind).mkdir(parents=True, exist_ok=True)
            count = per_class if kind != CLASSES[-1] else total - per_class * (len(CLASSES) - 1)
            # NOTE: eval images get numbers of their own, so no eval image repeats a training image's seed
            offset = 0 if side == "train" else images
            jobs += [(str(data / side), kind, offset + first, min(CHUNK, count - first))
                     for first in range(0, count, CHUNK)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_draw, jobs))
    marker.touch()


def warm(data: Path) -> int:
    """Read every image once (the page cache); the number of images."""
    count = 0
    for path in sorted(data.glob("*/*/*.png")):
        path.read_bytes()
        count += 1
    return count


# --- the plain side, in a child process --------------------------------------------------------------------


def plain(data: Path) -> dict[str, Any]:
    """Read, hash and decode every image of data/train and data/eval, a folder per class, one at a time."""
    began = time.perf_counter()
    from PIL import Image

    imported = time.perf_counter()
    seen: dict[bytes, str] = {}
    duplicates, failed, count = 0, 0, 0
    for side in ("train", "eval"):
        for folder in sorted((data / side).iterdir()):
            for path in sorted(folder.iterdir()):
                content = path.read_bytes()
                digest = hashlib.blake2b(content, digest_size=16).digest()
                duplicates += digest in seen
                seen.setdefault(digest, str(path))
                try:
                    with Image.open(io.BytesIO(content)) as image:
                        image.load()
                except Exception:  # NOTE: any error of Pillow's means the file does not decode
                    failed += 1
                count += 1
    return {"images": count, "duplicates": duplicates, "failed": failed,
            "import_seconds": round(imported - began, 3), "loop_seconds": round(time.perf_counter() - imported, 3)}


# --- the measurements --------------------------------------------------------------------------------------


def config_text() -> str:
    return f"""task: multiclass
data:
  train: data/train
  eval: data/eval
  label: shape
  image: {{size: [32, 32], channels: 3, mean: 0.5, std: 0.25}}
model:
  factory: {EXAMPLE / 'model.py'}:build
"""


def timed(command: list[str], cwd: Path) -> dict[str, Any]:
    """COMMAND run to its end: wall seconds, exit code, peak RSS (its own, from wait4) and the last of its output."""
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": round(seconds, 3), "exit_code": process.returncode,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "output": output.decode(errors="replace")[-600:]}


def measure(work: Path, images: int, rounds: int) -> dict[str, list[dict[str, Any]]]:
    commands = {"modelci data check": ["modelci", "data", "check", "--out", str(work / "out")],
                "plain Pillow loop": [sys.executable, str(Path(__file__).resolve()), "--child", str(work / "data")]}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            found = timed(command, work)
            if found["exit_code"] != 0:
                raise RuntimeError(f"{name} exited {found['exit_code']}: {found['output']}")
            if name == "plain Pillow loop":
                found |= json.loads(found.pop("output").strip().splitlines()[-1])
            else:
                report = json.loads((work / "out" / "data-report.json").read_text())
                found["output"] = found["output"].strip().splitlines()[-3:]
                found["report_keys"] = sorted(report)[:10]
            found["images_per_s"] = round(images / found["seconds"], 1)
            runs[name].append(found)
            print(f"  {name}: {found['seconds']:.1f} s, {found['images_per_s']:,.0f} images/s, "
                  f"peak RSS {found['peak_rss_mb']:.0f} MB", flush=True)
    return runs


def markdown(result: dict[str, Any]) -> str:
    m, load = result["machine"], result["load_average_1min"]
    from machine import shared_note

    shared = shared_note(load)
    lines = ["# image_data_check benchmark results", "",
             f"{result['date']} on {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}. "
             f"{result['images']:,} PNG images of 32×32 (examples/shapes' generator; {result['eval_images']:,} of "
             f"them in data/eval), a folder per class, page cache warm. Each side is a process of its own, timed "
             f"start to exit (Python's start and imports included), the sides taking turns, {result['rounds']} "
             f"rounds; the table shows the median. {shared}Generated by `run.py`; every run in results.json.", "",
             "| side | images/s | seconds | CPU seconds | peak RSS MB |", "|---|---:|---:|---:|---:|"]
    for name, runs in result["runs"].items():
        def median(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.median(r[key] for r in runs)
        lines.append(f"| {name} | {median('images_per_s'):,.0f} | {median('seconds'):.1f} | "
                     f"{median('cpu_seconds'):.1f} | {median('peak_rss_mb'):.0f} |")
    lines += ["", "modelci's work beyond the plain loop's: each image's size, channels and mode checked against the "
              "schema, its statistics measured (per-channel brightness and contrast, sharpness) for the profile, "
              "duplicates and train/eval leakage by content hash in bounded stores (memory, then disk), the class "
              "balance, "
              "data-report.json and data-profile.json written; on a pool of threads, one per core (Pillow decodes "
              "without the GIL). The plain loop is one thread and keeps its hashes in a dict.", "",
              "| target | measured | result |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | recorded |" for t in result["targets"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/modelci-image-data-check"),
                        help="where the images are generated, and reused by the next run")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(plain(args.child)))
        return
    sys.path.insert(0, str(HERE.parent))
    from machine import describe

    load_before = os.getloadavg()[0]  # NOTE: the machine is shared; its load explains a run's outliers
    work = args.scratch / str(args.images)
    began = time.perf_counter()
    generate(work / "data", args.images)
    print(f"  data: {time.perf_counter() - began:.0f} s to generate or find", flush=True)
    (work / "modelci.yaml").write_text(config_text(), encoding="utf-8")
    found = warm(work / "data")
    if found != args.images:
        raise RuntimeError(f"{work / 'data'} holds {found} images, not {args.images}: delete it and run again")
    runs = measure(work, args.images, args.rounds)
    medians = {name: statistics.median(r["images_per_s"] for r in v) for name, v in runs.items()}
    memory = {name: statistics.median(r["peak_rss_mb"] for r in v) for name, v in runs.items()}
    ratio = medians["modelci data check"] / medians["plain Pillow loop"]
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": describe(),
              "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
              "images": args.images, "eval_images": args.images // EVAL_SHARE, "rounds": args.rounds,
              "runs": runs,
              "targets": [{"target": "images/s: modelci data check against the plain Pillow loop (no target set)",
                           "value": f"{ratio:.2f}× ({medians['modelci data check']:,.0f} against "
                                    f"{medians['plain Pillow loop']:,.0f} images/s)", "pass": None},
                          {"target": "peak memory: modelci data check against the plain Pillow loop (no target set)",
                           "value": f"{memory['modelci data check']:.0f} MB against {memory['plain Pillow loop']:.0f} "
                                    "MB", "pass": None}]}
    (HERE / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (HERE / "RESULTS.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
