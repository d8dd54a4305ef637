"""`modelci run`: the pull-request pipeline, each stage in order; `--publish` adds the main flow.

data check → train → export + parity → evaluate → compare with the baseline → report, and with
`--publish` the artifact is pushed as `sha-<commit>` and `main` is moved to it. The report is
written however far the pipeline got, and nothing is published unless every stage passed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelci import github
from modelci.options import common, prepare

if TYPE_CHECKING:
    from modelci.config import Config

# Everything a run writes to the output folder; cleared at the start so no stale file from an
# earlier run can be mistaken for this run's.
OUTPUTS = ("data-report.json", "data-profile.json", "model.pt", "model.pkl", "train-log.json", "model.onnx",
           "parity.json", "samples.json", "metrics.json", "comparison.json", "report.md", "report-full.md",
           "model-card.md")
EVIDENCE = ("data-report.json", "data-profile.json", "train-log.json", "parity.json", "samples.json", "metrics.json",
            "comparison.json", "report.md", "model-card.md")


def git_revision(root: Path) -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _clear(out: Path) -> None:
    from modelci.compare.comparison import BASELINE_DIR

    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / BASELINE_DIR, ignore_errors=True)


def publish(config: Config, out: Path, revision: str) -> str:
    """Push the artifact as sha-<revision> and move `main` to it, in one index update."""
    from modelci.compare.cli import BASELINE_TAG
    from modelci.registry.artifact import ANNOTATION_PREFIX, push_files
    from modelci.registry.reference import parse_reference

    metrics = json.loads((out / "metrics.json").read_text())
    data = json.loads((out / "data-report.json").read_text())
    comparison = json.loads((out / "comparison.json").read_text())
    annotations = {
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.title": config.root.name,
        f"{ANNOTATION_PREFIX}task": config.task,
        f"{ANNOTATION_PREFIX}verdict": "passed",
        f"{ANNOTATION_PREFIX}metrics": json.dumps(metrics["metrics"], sort_keys=True),
        f"{ANNOTATION_PREFIX}data.fingerprint": data["datasets"][0]["fingerprint"],
        f"{ANNOTATION_PREFIX}baseline": comparison["baseline_digest"] or "",
    }
    files = [out / "model.onnx", *(out / name for name in EVIDENCE)]
    if config.data.schema is not None:
        files.append(config.data.schema)
    registry = parse_reference(config.registry, base=config.root)
    with github.group(f"Publish to {registry}"):
        descriptor = push_files(files, registry, [f"sha-{revision}", BASELINE_TAG], annotations)
        github.log(f"    {registry.with_tag(f'sha-{revision}')} and :{BASELINE_TAG} = {descriptor.digest}")
    github.set_output("digest", descriptor.digest)
    return descriptor.digest


def run_pipeline(config: Config, out: Path, baseline: str | None, revision: str | None,
                 github_comment: bool = False) -> None:
    """Every stage in order; the report (and the pull-request comment) is written however far the run got."""
    from modelci.compare import cli as compare_cli
    from modelci.data import cli as data_cli
    from modelci.data.tables import load_datasets
    from modelci.evaluate import cli as evaluate_cli
    from modelci.export import cli as export_cli
    from modelci.registry.artifact import resolve
    from modelci.report import cli as report_cli
    from modelci.train import cli as train_cli

    _clear(out)
    # NOTE: the baseline's tag is resolved once; drift and the comparison both use that digest,
    # even if `main` moves while this runs.
    reference = compare_cli.baseline_reference(config, baseline)
    descriptor = resolve(reference)
    pinned = reference.with_digest(descriptor.digest) if descriptor is not None else reference
    try:
        data_cli.stage(config, out, pinned)
        datasets = load_datasets(config)
        data_cli.record_cleaning(out, datasets.cleaning)
        train_cli.stage(config, out, datasets)
        export_cli.stage(config, out, datasets.eval)
        evaluate_cli.stage(config, out, datasets)
        compare_cli.stage(config, out, datasets.eval, pinned)
    finally:
        report_cli.stage(out, config.root.name)
        if github_comment:
            report_cli.comment(out)
    if revision is not None:
        publish(config, out, revision)


@click.command()
@common
@click.option("--baseline", default=None, help="The baseline artifact.  [default: REGISTRY:main]")
@click.option("--registry", default=None, help="Overrides `registry` in the config, e.g. oci:PATH.")
@click.option("--publish", "do_publish", is_flag=True, help="Also push the artifact as sha-<commit> and move main.")
@click.option("--revision", default=None, envvar="GITHUB_SHA",
              help="The commit the artifact is tagged with.  [default: git rev-parse HEAD]")
@click.option("--github-comment", is_flag=True, envvar="MODELCI_GITHUB_COMMENT",
              help="Also create or update modelci's comment on the pull request (GitHub Actions, with GITHUB_TOKEN).")
def run(config_path: Path | None, out: Path, baseline: str | None, registry: str | None, do_publish: bool,
        revision: str | None, github_comment: bool) -> None:
    """Run the whole pull-request pipeline: data check, train, export, evaluate, compare, report."""
    from modelci.errors import UsageError

    config = prepare(config_path, out).with_registry(registry)
    if do_publish:
        revision = revision or git_revision(config.root)
        if not revision:
            raise UsageError(f"--publish needs the commit to tag the artifact with, and {config.root} is not a git "
                             "checkout", hint="pass --revision SHA (in GitHub Actions, GITHUB_SHA is used)")
    run_pipeline(config, out, baseline, revision if do_publish else None, github_comment)
