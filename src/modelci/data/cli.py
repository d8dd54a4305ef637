"""`modelci data check | profile | infer-schema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelci import github
from modelci.options import common, out_option, prepare

if TYPE_CHECKING:
    from modelci.config import Config
    from modelci.data.check import DataReport
    from modelci.data.scan import Scan
    from modelci.registry.reference import Reference

DATA_REPORT = "data-report.json"


def baseline_profile(baseline: Reference) -> dict[str, Any] | None:
    """The data profile kept in the baseline artifact, or None when there is no baseline (or it has none)."""
    from modelci.data.profile import PROFILE_FILE, PROFILE_VERSION
    from modelci.registry.artifact import read_file

    data = read_file(baseline, PROFILE_FILE)
    if data is None:
        return None
    profile = json.loads(data)
    if profile.get("version") != PROFILE_VERSION:
        github.warning(f"{baseline}: its data profile has version {profile.get('version')}; drift is not measured")
        return None
    return dict(profile)


def stage(config: Config, out: Path, baseline: Reference | None = None) -> DataReport:
    """Check and profile the data; writes data-report.json and data-profile.json, raises CheckFailed on failure."""
    from modelci import atomic
    from modelci.data.check import announce, check_data
    from modelci.data.profile import PROFILE_FILE
    from modelci.errors import CheckFailed

    with github.group("Data checks"):
        previous = baseline_profile(baseline) if baseline is not None else None
        github.log(f"    drift: against {baseline}" if previous else "    drift: no baseline profile to compare with")
        report, profile = check_data(config, previous, str(baseline) if previous else None)
        atomic.write_json(out / PROFILE_FILE, profile)
        atomic.write_json(out / DATA_REPORT, report.to_json())
        announce(report)
    if not report.passed:
        count = sum(len(d.errors) for d in report.datasets)
        drifted = sum(d.verdict == "drifted" for r in report.datasets for d in r.drift)
        what = f"{count} problems" + (f", {drifted} drifted columns" if report.drift_severity == "error" else "")
        raise CheckFailed(f"the data checks failed: {what} (see {out / DATA_REPORT})",
                          hint="fix the data, or the schema if the data is right")
    return report


def record_cleaning(out: Path, cleaning: dict[str, Any]) -> None:
    """Add what `data.clean` removed before training to data-report.json."""
    from modelci import atomic

    if not cleaning:
        return
    path = out / DATA_REPORT
    report = json.loads(path.read_text())
    report["cleaning"] = cleaning
    atomic.write_json(path, report)
    for name, counts in cleaning.items():
        github.log(f"    {name}: cleaning kept {counts['rows_after']} of {counts['rows_before']} rows "
                   f"(dropped {counts['duplicates']} duplicates, {counts['null_label']} without a label, "
                   f"{counts['invalid']} invalid; clipped {counts['clipped']} values)")


@click.group()
def data() -> None:
    """Check, profile and describe training data."""


@data.command("check")
@common
@click.option("--baseline", default=None,
              help="The artifact whose data profile drift is measured against.  [default: REGISTRY:main]")
def check(config_path: Path | None, out: Path, baseline: str | None) -> None:
    """Check the training and evaluation data against the schema, and measure drift."""
    from modelci.compare.cli import baseline_reference

    config = prepare(config_path, out)
    stage(config, out, baseline_reference(config, baseline))


def _profiled_images(data_path: Path) -> Scan | None:
    """One pass over DATA when it is a folder per class of images (its label column named `label`), else None."""
    from modelci.data.images import is_image_folder

    if not is_image_folder(data_path):
        return None
    from modelci.data.images.scan import scan_images

    found = scan_images(data_path, None, label="label")
    found.close()
    return found


def _profiled(data_path: Path) -> Scan:
    """One pass over DATA with no schema: its profile, rows and columns."""
    from modelci.data.scan import scan

    found = scan(data_path, None)
    found.close()
    return found


@data.command("profile")
@click.argument("data_path", metavar="DATA", type=click.Path(path_type=Path))
@out_option
def profile_command(data_path: Path, out: Path) -> None:
    """Write per-column statistics and histograms of DATA to OUT/data-profile.json."""
    from modelci import atomic
    from modelci.data.profile import PROFILE_FILE, PROFILE_VERSION

    found = _profiled_images(data_path) or _profiled(data_path)
    document = {"version": PROFILE_VERSION,
                "datasets": {"data": {"fingerprint": found.fingerprint, **found.profile.to_json()}}}
    atomic.write_json(out / PROFILE_FILE, document)
    github.log(f"wrote {out / PROFILE_FILE}: {found.rows} rows, {len(found.columns)} columns")


@data.command("infer-schema")
@click.argument("data_paths", metavar="DATA...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("schema.yaml"),
              show_default=True, help="Where to write the schema.")
def infer_schema_command(data_paths: tuple[Path, ...], output: Path) -> None:
    """Write a schema that holds for every DATA (e.g. the training and the evaluation data), for a person to edit.

    Each DATA is a file, a folder or a glob. Ranges are widened beyond the values seen (the schema says by how much).
    """
    from modelci import atomic
    from modelci.data.infer import dump_schema, infer_schema, text_samples

    profiles = [_profiled(path).profile.to_json() for path in data_paths]
    _warn_partial_columns(data_paths, profiles)
    samples = text_samples(list(data_paths))
    document = infer_schema(profiles, samples)
    atomic.write_text(output, dump_schema(document, [str(p) for p in data_paths]))
    github.log(f"wrote {output}: review the ranges and allowed values, then set data.schema in modelci.yaml")
    _note_roles(document["columns"], samples)


def _note_roles(columns: dict[str, dict[str, Any]], samples: dict[str, list[str]]) -> None:
    """One line naming the columns the model will leave out, and one for numbers stored as text."""
    left = [f"{name} (role: {rule['role']})" for name, rule in columns.items() if rule.get("role")]
    if left:
        github.log(f"    left out of the features: {', '.join(left)}; set role: feature in the schema to use one")
    texts = [name for name, rule in columns.items() if rule.get("type") == "text"]
    if texts:
        github.log(f"    free text, typed text (checked as text, left out of a table model's features): "
                   f"{', '.join(texts)}")
    numbers = [name for name in samples if columns.get(name, {}).get("type") == "float"]
    if numbers:
        github.log(f"    text whose every value is a number, typed float: {', '.join(numbers)}")


def _warn_partial_columns(data_paths: tuple[Path, ...], profiles: list[dict[str, Any]]) -> None:
    """A column that some DATA lack is in the schema, and the data check will say where it is missing."""
    given = list(zip(data_paths, profiles, strict=True))
    for name in dict.fromkeys(name for profile in profiles for name in profile["columns"]):
        lacking = [str(path) for path, profile in given if name not in profile["columns"]]
        if lacking:
            github.warning(f"{name}: not a column of {', '.join(lacking)}; the data check will report it missing there")
