"""Benchmark modelci's data checks against reading the file, pandera and Great Expectations.

    python benchmarks/data_check/run.py [--rows 5000000] [--big-rows 20000000] [--repeat 5] [--scratch /tmp/bench]

Generates the data (reusing files of the right size), then runs every measurement in a fresh child process
(`run.py --child KIND FILE`), one at a time, after reading the file once to warm the page cache. Each child
times only the work (imports excluded, reported apart) and reports its own peak RSS. Then `modelci data check`
and pandera are timed as whole processes, start to exit, taking turns. Writes results.json and RESULTS.md next
to this file. See README.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()  # a child's import_seconds: from here to its tool's libraries imported

HERE = Path(__file__).resolve().parent
BENCH_PYTHON = "/work/benchvenv/bin/python"
COMPETITORS = ("pandera", "gx")
# NOTE: whole-process measurements: the command as a user runs it, timed by this process from start to exit
PROCESSES = {"modelci-process": "modelci", "pandera-process": "pandera"}
PROCESS_NAMES = {"modelci-process": "modelci data check, whole process", "pandera-process": "pandera, whole process"}
SLOW_SECONDS = 20.0  # a competitor slower than this is measured once
GIB_MB = 1024.0


# --- the child: one measurement, reported as one JSON line -----------------------------------------------------

def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _cpu_seconds() -> float:
    """User and system time of every thread so far: steadier than wall time on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def modelci_config(data: Path) -> dict[str, Any]:
    """The benchmark's modelci.yaml for DATA, which lies beside it with schema.yaml."""
    return {"task": "binary", "data": {"train": data.name, "label": "label", "schema": "schema.yaml"},
            "model": {"factory": "model.py:build"}}


def _modelci(kind: str, path: Path, baseline: Path | None) -> tuple[float, dict[str, Any]]:
    from modelci.config import parse_config
    from modelci.data.check import check_data

    start = time.perf_counter()
    config = parse_config(modelci_config(path), path.parent / "modelci.yaml")
    base = json.loads(baseline.read_text(encoding="utf-8")) if baseline else None
    report, profile = check_data(config, baseline_profile=base, profile_columns=kind != "checks")
    seconds = time.perf_counter() - start
    dataset = report.datasets[0]
    found: dict[str, Any] = {"rows": dataset.rows, "passed": report.passed,
                             "violations": [[v.column, v.rule, v.rows] for v in dataset.violations],
                             "drifted": [d.column for d in dataset.drift if d.verdict == "drifted"],
                             "drift_columns": len(dataset.drift)}
    if kind == "baseline":
        Path(os.environ["BENCH_BASELINE_OUT"]).write_text(json.dumps(profile), encoding="utf-8")
    return seconds, found


def _import_tool(kind: str) -> None:
    """Import what the measurement needs, so that its clock excludes the imports."""
    if kind in COMPETITORS:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        sys.path.insert(0, str(HERE))
        names = ["competitors", "pandera.pandas" if kind == "pandera" else "great_expectations"]
    elif kind == "read":
        names = ["pyarrow.parquet"]
    else:
        # NOTE: modelci imports pandas and pyarrow lazily, inside check_data; like every tool's imports,
        # they are timed apart.
        names = ["modelci.data.check", "pandas", "pyarrow.compute", "pyarrow.parquet"]
    for name in names:
        importlib.import_module(name)


def child(kind: str, file: str, baseline: str | None) -> None:
    path = Path(file).resolve()
    _import_tool(kind)
    imported, import_rss, cpu_before = time.perf_counter(), _peak_rss_mb(), _cpu_seconds()
    if kind == "read":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).num_rows
        seconds, found = time.perf_counter() - imported, {"rows": rows}
    elif kind in COMPETITORS:
        import competitors

        found = competitors.RUNNERS[kind](str(path))  # times itself: read + build the checks + validate
        seconds = found["read_seconds"] + found["check_seconds"]
    else:
        seconds, found = _modelci(kind, path, Path(baseline) if baseline else None)
    print(json.dumps({"kind": kind, "seconds": round(seconds, 3), "cpu_seconds": round(_cpu_seconds() - cpu_before, 3),
                      "peak_rss_mb": round(_peak_rss_mb(), 1),
                      "import_seconds": round(imported - STARTED, 3), "import_rss_mb": round(import_rss, 1),
                      **found}))


# --- the driver ---------------------------------------------------------------------------------------------------

def label(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else str(rows)


def ensure_file(scratch: Path, rows: int, seed: int) -> Path:
    import pyarrow.parquet as pq

    path = scratch / (f"rows-{label(rows)}.parquet" if seed == 0 else f"rows-{label(rows)}-seed{seed}.parquet")
    if path.exists() and pq.read_metadata(path).num_rows == rows:
        print(f"reusing {path}")
        return path
    subprocess.run([sys.executable, str(HERE / "generate.py"), str(rows), str(path), "--seed", str(seed)],
                   check=True, cwd=HERE)
    return path


def warm(path: Path) -> None:
    with path.open("rb") as f:
        while f.read(64 << 20):
            pass


def _waited(command: list[str], cwd: Path) -> tuple[float, int, Any, str]:
    """Run COMMAND to its end: wall seconds, exit code, its own resource usage (wait4) and its output."""
    with tempfile.TemporaryFile("w+") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        return wall, process.returncode, usage, output.read()


def modelci_command() -> str:
    """The `modelci` console script of this Python's environment, as a user's shell finds it."""
    beside = Path(sys.executable).with_name("modelci")
    found = str(beside) if beside.exists() else shutil.which("modelci")
    if found is None:
        raise RuntimeError("no `modelci` console script: install modelci (pip install -e .) in this environment")
    return found


def run_process(kind: str, path: Path) -> dict[str, Any]:
    """One whole-process run: `modelci data check` in the data's folder (its modelci.yaml, exit 1 for the planted
    problems), or competitors.py in the benchmark venv (imports pandera, reads the file, validates)."""
    if kind == "modelci-process":
        command, cwd, expected = [modelci_command(), "data", "check"], path.parent, 1
    else:
        command, cwd, expected = [BENCH_PYTHON, str(HERE / "competitors.py"), PROCESSES[kind], str(path)], HERE, 0
    load = os.getloadavg()[0]
    wall, code, usage, output = _waited(command, cwd)
    if code != expected:
        raise RuntimeError(f"{' '.join(command)} exited {code}, not {expected}:\n{output[-4000:]}")
    result: dict[str, Any] = {"kind": kind, "seconds": round(wall, 3),
                              "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
                              "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "exit_code": code}
    if kind == "modelci-process":
        report = json.loads((cwd / ".modelci" / "out" / "data-report.json").read_text(encoding="utf-8"))
        dataset = report["datasets"][0]
        result.update(rows=dataset["rows"], violations=[[v["column"], v["rule"], v["rows"]]
                                                        for v in dataset["violations"]])
    else:
        result.update(json.loads(output.strip().splitlines()[-1]))
        result["seconds"] = round(wall, 3)  # NOTE: competitors.py's own "seconds" leaves imports out
    result.update(wall_seconds=round(wall, 3), load_before=round(load, 2))
    return result


def run_child(kind: str, path: Path, baseline: Path | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    if kind in PROCESSES:
        return run_process(kind, path)
    python = BENCH_PYTHON if kind in COMPETITORS else sys.executable
    command = [python, str(Path(__file__).resolve()), "--child", kind, str(path)]
    if baseline is not None:
        command += ["--baseline", str(baseline)]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(wall_seconds=round(wall, 3), load_before=round(load, 2))
    return result


def measure(group: list[tuple[str, str, Path | None]], path: Path, rows: int, repeat: int) -> list[dict[str, Any]]:
    """Run each (name, kind, baseline) of `group` `repeat` times, taking turns, so that a change in the
    machine's speed during the group (it is shared) falls on all of them alike."""
    warm(path)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in group}
    for _ in range(repeat):
        for name, kind, baseline in group:
            if kind in COMPETITORS and runs[name] and runs[name][-1]["seconds"] > SLOW_SECONDS:
                continue
            run = run_child(kind, path, baseline)
            runs[name].append(run)
            print(f"  {name} {label(rows)}: {run['seconds']:.2f} s, peak {run['peak_rss_mb']:.0f} MB", flush=True)
    return [{"name": name, "kind": kind, "rows": rows, "file": str(path), "repeats": len(runs[name]),
             "median_seconds": round(statistics.median(r["seconds"] for r in runs[name]), 3),
             "min_seconds": min(r["seconds"] for r in runs[name]),
             "median_cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in runs[name]), 3),
             "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[name]), "runs": runs[name]}
            for name, kind, _ in group]


def found_problems(entry: dict[str, Any], planted: dict[str, int]) -> dict[str, Any]:
    """What a tool reported for each planted problem, and whether that matches what was planted."""
    run, kind = entry["runs"][0], entry["kind"]
    kind = "pandera" if kind == "pandera-process" else kind
    if kind == "read":
        return {}
    if kind in COMPETITORS:
        counts = run["counts"]
        names = ({"f2_out_of_range": "f2:in_range", "c2_unknown": "c2:isin",
                  "duplicate_rows": "multiple_fields_uniqueness"}
                 if kind == "pandera" else
                 {"f2_out_of_range": "f2:expect_column_values_to_be_between",
                  "c2_unknown": "c2:expect_column_values_to_be_in_set",
                  "duplicate_rows": "expect_compound_columns_to_be_unique"})
        got = {problem: counts.get(check, 0) for problem, check in names.items()}
        extra = sorted(set(counts) - set(names.values()))
    else:
        rules = {("f2", "max"): "f2_out_of_range", ("c2", "allowed"): "c2_unknown",
                 (None, "duplicates"): "duplicate_rows"}
        got = {problem: 0 for problem in planted}
        extra = []
        for column, rule, rows in run["violations"]:
            if (column, rule) in rules:
                got[rules[column, rule]] = rows
            else:
                extra.append(f"{column}:{rule}")
    want = dict(planted)
    if kind == "gx":
        want["duplicate_rows"] *= 2  # GX counts every row of a repeated group: each copy and the row it copies
    return {"counts": got, "expected": want, "unexpected_checks": extra, "ok": got == want and not extra}


def versions() -> dict[str, Any]:
    code = "import importlib.metadata as m, json, sys; print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    mine = subprocess.run([sys.executable, "-c", code, "modelci", "pyarrow", "numpy", "pandas"],
                          capture_output=True, text=True, check=True).stdout
    theirs = subprocess.run([BENCH_PYTHON, "-c", code, "pandera", "great_expectations", "pandas", "pyarrow", "numpy"],
                            capture_output=True, text=True, check=True).stdout
    return {"python": platform.python_version(), "modelci_env": json.loads(mine),
            "competitor_env": json.loads(theirs)}


def targets(entries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    checks, full, big = entries["modelci checks"], entries["modelci checks+profile+drift"], entries["modelci big"]
    read = entries["read_table"]
    rows: list[dict[str, Any]] = []
    for tool in ("pandera", "gx"):
        ratio = entries[tool]["median_seconds"] / checks["median_seconds"]
        rows.append({"target": f"modelci checks ≥10× faster than {tool}", "value": f"{ratio:.1f}×",
                     "pass": ratio >= 10})
    ratio = checks["median_seconds"] / read["median_seconds"]
    rows.append({"target": "modelci checks within 3× of pyarrow read_table", "value": f"{ratio:.2f}×",
                 "pass": ratio <= 3})
    peaks = [checks["peak_rss_mb"], full["peak_rss_mb"], big["peak_rss_mb"]]
    growth = big["peak_rss_mb"] / full["peak_rss_mb"]
    rows.append({"target": "peak memory < 1 GiB (5M and 20M) and not growing (20M peak ≤ 1.25× 5M peak)",
                 "value": f"max {max(peaks):.0f} MB; {label(big['rows'])}/{label(full['rows'])} = {growth:.2f}×",
                 "pass": max(peaks) < GIB_MB and growth <= 1.25})
    ratio = full["median_seconds"] / checks["median_seconds"]
    rows.append({"target": "profile + drift add ≤ 30% over checks only", "value": f"+{(ratio - 1) * 100:.0f}%",
                 "pass": ratio <= 1.3})
    ratio = entries[PROCESS_NAMES["pandera-process"]]["median_seconds"] / entries[
        PROCESS_NAMES["modelci-process"]]["median_seconds"]
    rows.append({"target": "`modelci data check` ≥10× faster than pandera, whole process (start to exit)",
                 "value": f"{ratio:.1f}×", "pass": ratio >= 10})
    return rows


def markdown(result: dict[str, Any]) -> str:
    m, v = result["machine"], result["versions"]
    mine, theirs = v["modelci_env"], v["competitor_env"]
    lines = ["# data_check benchmark results", "",
             f"{result['date']} on {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}; "
             f"Python {v['python']}, modelci {mine['modelci']}, pyarrow {mine['pyarrow']}, numpy {mine['numpy']}, "
             f"pandera {theirs['pandera']}, great_expectations {theirs['great_expectations']}, "
             f"pandas {theirs['pandas']}. Generated by `run.py`; every number in results.json.", "",
             "| tool | rows | median s | min s | median CPU s | runs | peak RSS MB | found planted problems |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for e in result["measurements"]:
        found = e["found"]
        if not found:
            text = "— (no checks)"
        else:
            counts = ", ".join(f"{k} {n}" for k, n in found["counts"].items())
            text = ("yes" if found["ok"] else "**NO**") + f" ({counts}"
            text += (f"; also {', '.join(found['unexpected_checks'])}" if found["unexpected_checks"] else "") + ")"
        lines.append(f"| {e['name']} | {label(e['rows'])} | {e['median_seconds']:.2f} | {e['min_seconds']:.2f} | "
                     f"{e['median_cpu_seconds']:.2f} | {e['repeats']} | {e['peak_rss_mb']:.0f} | {text} |")
    size = label(result["measurements"][0]["rows"])
    lines += ["", f"Planted per {size} file: {result['planted']} (GX counts both rows "
              "of each duplicate pair). Times exclude imports, except the whole-process rows: `modelci data check` "
              "run as a user runs it (the console script, in the data's folder, no baseline) and a Python process "
              "that imports pandera, reads the file and validates, each timed from start to exit, taking turns. "
              "The big file is compared with the same baseline profile. Wall-clock times on a shared machine: the "
              "load average before each run is in results.json; CPU time (every thread, user and system) varies "
              "less from run to run.",
              "",
              "| target | measured | result |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {'pass' if t['pass'] else '**FAIL**'} |" for t in result["targets"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--big-rows", type=int, default=20_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--process-repeat", type=int, default=3,
                        help="runs of each whole-process measurement (pandera's take about 25 s each)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("file", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.file is None:
            parser.error("--child needs a FILE")
        child(args.child, args.file, args.baseline)
        return
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    from generate import planted
    from machine import describe
    from spec import write_modelci_schema

    scratch: Path = args.scratch
    scratch.mkdir(parents=True, exist_ok=True)
    write_modelci_schema(scratch / "schema.yaml")
    main_file, big_file = ensure_file(scratch, args.rows, 0), ensure_file(scratch, args.big_rows, 0)
    # NOTE: for the whole-process run: the config a user keeps beside the data (JSON is YAML), and no
    # registry (so no baseline) left from an earlier run
    (scratch / "modelci.yaml").write_text(json.dumps(modelci_config(main_file)) + "\n", encoding="utf-8")
    shutil.rmtree(scratch / ".modelci", ignore_errors=True)
    baseline = scratch / f"baseline-{label(args.rows)}-seed1.json"
    if not baseline.exists():
        seed1 = ensure_file(scratch, args.rows, 1)
        run_child("baseline", seed1, env={"BENCH_BASELINE_OUT": str(baseline)})
        print(f"wrote {baseline}")

    # NOTE: checks alone and checks with the profile take turns: their ratio is a target.
    plan = [([("read_table", "read", None)], main_file, args.rows, args.repeat),
            ([("modelci checks", "checks", None), ("modelci checks+profile+drift", "full", baseline)],
             main_file, args.rows, args.repeat),
            ([("pandera", "pandera", None)], main_file, args.rows, args.repeat),
            ([("gx", "gx", None)], main_file, args.rows, args.repeat),
            ([("modelci big", "full", baseline)], big_file, args.big_rows, 1),
            ([(PROCESS_NAMES[kind], kind, None) for kind in PROCESSES], main_file, args.rows, args.process_repeat)]
    entries: dict[str, dict[str, Any]] = {}
    for group, path, rows, repeat in plan:
        for entry in measure(group, path, rows, repeat):
            entry["found"] = found_problems(entry, planted(rows))
            if entry["found"] and not entry["found"]["ok"]:
                print(f"WARNING: {entry['name']} did not report the planted problems: {entry['found']}")
            entries[entry["name"]] = entry
    entries["modelci big"]["name"] = "modelci checks+profile+drift"
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": describe(), "versions": versions(), "planted": planted(args.rows),
              "baseline_profile": str(baseline), "measurements": list(entries.values()), "targets": targets(entries)}
    (HERE / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (HERE / "RESULTS.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
