"""`modelci data check | infer-schema`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelci import github
from modelci.options import common, prepare

if TYPE_CHECKING:
    from modelci.config import Config
    from modelci.data.check import DataReport

DATA_REPORT = "data-report.json"


def stage(config: Config, out: Path) -> DataReport:
    """Check the data; writes data-report.json, and raises CheckFailed when a check fails."""
    from modelci import atomic
    from modelci.data.check import announce, check_data
    from modelci.errors import CheckFailed

    with github.group("Data checks"):
        report = check_data(config)
        atomic.write_json(out / DATA_REPORT, report.to_json())
        announce(report)
    if not report.passed:
        count = sum(len(d.errors) for d in report.datasets)
        raise CheckFailed(f"the data checks failed: {count} problems (see {out / DATA_REPORT})",
                          hint="fix the data, or the schema if the data is right")
    return report


@click.group()
def data() -> None:
    """Check, profile and describe training data."""


@data.command("check")
@common
def check(config_path: Path | None, out: Path) -> None:
    """Check the training and evaluation data against the schema."""
    stage(prepare(config_path, out), out)


@data.command("infer-schema")
@click.argument("data_path", metavar="DATA", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("schema.yaml"),
              show_default=True, help="Where to write the schema.")
def infer_schema_command(data_path: Path, output: Path) -> None:
    """Write a schema inferred from DATA, for a person to edit."""
    from modelci import atomic
    from modelci.data.schema import dump_schema, infer_schema
    from modelci.data.tables import read_table

    atomic.write_text(output, dump_schema(infer_schema(read_table(data_path))))
    github.log(f"wrote {output}: review the ranges and allowed values, then set data.schema in modelci.yaml")
