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
    from modelci.report.markdown import FULL_REPORT_FILE, REPORT_FILE, SUMMARY_LIMIT, build_report, fit

    markdown, passed = build_report(out)
    report = fit(markdown)  # NOTE: report.md is the pull-request comment, so it fits GitHub's limit
    atomic.write_text(out / REPORT_FILE, report)
    if report != markdown:
        atomic.write_text(out / FULL_REPORT_FILE, markdown)
    else:
        (out / FULL_REPORT_FILE).unlink(missing_ok=True)
    card = build_card(out, name or Path.cwd().name)
    if card is not None:
        atomic.write_text(out / CARD_FILE, card)
    github.add_summary(fit(markdown, SUMMARY_LIMIT))
    github.set_output("verdict", "passed" if passed else "failed")
    github.set_output("report", str(out / REPORT_FILE))
    github.log(f"==> report: {out / REPORT_FILE}")
    return passed


def comment(out: Path) -> None:
    """Create or update modelci's pull-request comment with report.md. A failure is a warning in the
    log and the job summary, never a change of the verdict."""
    import os

    from modelci.report import comment as sticky
    from modelci.report.markdown import REPORT_FILE

    target = sticky.target_from_env(os.environ)
    token = os.environ.get("GITHUB_TOKEN", "")
    problem = None
    if target is None:
        problem = "not a pull request's workflow run (no pull request number in GITHUB_EVENT_PATH or GITHUB_REF)"
    elif not token:
        problem = "GITHUB_TOKEN is not set; pass it to the step: `env: {GITHUB_TOKEN: ${{ github.token }}}`"
    else:
        api_url, repository, number = target
        try:
            posted = sticky.upsert((out / REPORT_FILE).read_text(encoding="utf-8"), api_url=api_url,
                                   repository=repository, number=number, token=token)
        except sticky.CommentError as exc:
            problem = str(exc)
        else:
            github.log(f"    pull-request comment {posted.action}: {posted.html_url}")
            github.set_output("comment-url", posted.html_url)
            return
    github.warning(f"no pull-request comment: {problem}")
    github.add_summary(f"\n> [!WARNING]\n> modelci could not comment on the pull request: {problem}\n")


@click.command()
@out_option
@click.option("--github-comment", is_flag=True, envvar="MODELCI_GITHUB_COMMENT",
              help="Also create or update modelci's comment on the pull request (GitHub Actions, with GITHUB_TOKEN).")
def report(out: Path, github_comment: bool) -> None:
    """Write report.md (and the job summary in Actions) from the stages' outputs in OUT."""
    if not out.is_dir():
        from modelci.errors import UsageError

        raise UsageError(f"{out}: no such folder", hint="run the stages first, or pass --out")
    stage(out)
    if github_comment:
        comment(out)
