"""`modelci report`."""

from __future__ import annotations

from pathlib import Path

import click

from modelci import github
from modelci.options import out_option


def stage(out: Path, name: str | None = None) -> bool:
    """Write report.md, the model card and the job summary; set the `verdict` and `report` step outputs.

    `name`, the model's, heads the card (default: the working directory's name, the repository's).
    """
    from modelci import atomic
    from modelci.report.card import CARD_FILE, build_card
    from modelci.report.markdown import REPORT_FILE, build_report

    markdown, passed = build_report(out)
    atomic.write_text(out / REPORT_FILE, markdown)
    card = build_card(out, name or Path.cwd().name)
    if card is not None:
        atomic.write_text(out / CARD_FILE, card)
    github.add_summary(markdown)
    github.set_output("verdict", "passed" if passed else "failed")
    github.set_output("report", str(out / REPORT_FILE))
    github.log(f"==> report: {out / REPORT_FILE}")
    return passed


@click.command()
@out_option
def report(out: Path) -> None:
    """Write report.md (and the job summary in Actions) from the stages' outputs in OUT."""
    if not out.is_dir():
        from modelci.errors import UsageError

        raise UsageError(f"{out}: no such folder", hint="run the stages first, or pass --out")
    stage(out)
