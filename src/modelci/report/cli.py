"""`modelci report`."""

from __future__ import annotations

from pathlib import Path

import click

from modelci import github
from modelci.options import DEFAULT_OUT, out_option


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
    from modelci.report.comment import CommentError
    from modelci.report.markdown import REPORT_FILE

    try:
        _post((out / REPORT_FILE).read_text(encoding="utf-8"))
    except CommentError as exc:
        github.warning(f"no pull-request comment: {exc}")
        github.add_summary(f"\n> [!WARNING]\n> modelci could not comment on the pull request: {exc}\n")


def _post(body: str) -> None:
    """Post `body` as modelci's comment on the pull request of this workflow run."""
    import os

    from modelci.report import comment as sticky

    token = os.environ.get("GITHUB_TOKEN", "")
    if not token:
        raise sticky.CommentError("GITHUB_TOKEN is not set; pass it to the step: "
                                  "`env: {GITHUB_TOKEN: ${{ github.token }}}`")
    api_url, repository, number = sticky.pull_request_to_comment(os.environ, token)
    posted = sticky.upsert(body, api_url=api_url, repository=repository, number=number, token=token)
    github.log(f"    pull-request comment {posted.action}: {posted.html_url}")
    github.set_output("comment-url", posted.html_url)


def _noted(body: str) -> str:
    """In a workflow_run workflow, the report under a note that says whose run wrote it: a fork's
    pull request controls its own run, so its report is its author's words, not modelci's verdict."""
    import os

    from modelci.report.comment import event_of
    from modelci.report.markdown import MARKER

    if os.environ.get("GITHUB_EVENT_NAME") != "workflow_run" or not body.startswith(MARKER):
        return body
    run = event_of(os.environ.get("GITHUB_EVENT_PATH", "")).get("workflow_run") or {}
    link = f"[the run]({run['html_url']})" if isinstance(run.get("html_url"), str) else "the run"
    note = (f"> [!NOTE]\n> This report was written by {link} of a pull request from a fork, whose workflow the fork "
            "controls; modelci posts it as that run left it.\n")
    return f"{MARKER}\n{note}{body[len(MARKER):]}"


@click.command("comment")
@click.argument("report_file", metavar="REPORT", type=click.Path(dir_okay=False, path_type=Path),
                default=f"{DEFAULT_OUT}/report.md")
def comment_command(report_file: Path) -> None:
    """Create or update modelci's comment on the pull request with REPORT.  [default: .modelci/out/report.md]

    In a pull_request workflow the pull request is the run's own. In a workflow_run workflow, the way to
    comment on a fork's pull request, it is the open pull request whose head is the commit that run checked,
    as GitHub's API says; the report, which the fork's run wrote, is posted as data and must be modelci's."""
    from modelci.errors import CommentFailed, UsageError
    from modelci.report.comment import CommentError
    from modelci.report.markdown import COMMENT_LIMIT, MARKER

    if not report_file.is_file() or report_file.is_symlink():  # NOTE: a fork's artifact may hold a link
        raise UsageError(f"{report_file}: no such report", hint="run `modelci report` first, or name the report.md")
    body = _noted(report_file.read_text(encoding="utf-8", errors="replace"))
    if not body.startswith(MARKER) or len(body) > COMMENT_LIMIT:
        raise UsageError(f"{report_file}: not a report of modelci's (it must start with {MARKER} and fit in "
                         f"{COMMENT_LIMIT:,} characters); nothing was posted")
    try:
        _post(body)
    except CommentError as exc:
        raise CommentFailed(str(exc)) from None


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
