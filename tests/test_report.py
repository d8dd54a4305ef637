"""The report as GitHub renders it: parsed by cmark-gfm (GitHub's own parser), and always short
enough for a pull-request comment."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import cmarkgfm
from cmarkgfm.cmark import Options

from modelci.report.markdown import COMMENT_LIMIT, CUT_NOTE, _cell, _line_chart, fit


class Tables(HTMLParser):
    """The header cells of every table, the code blocks by language, and the unclosed <details>."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[list[str]] = []
        self.code: list[str] = []
        self.open_details = 0
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "thead":
            self.headers.append([])
        elif tag == "th":
            self._cell = ""
        elif tag == "pre":
            self.code.append(dict(attrs).get("lang") or "")
        elif tag == "details":
            self.open_details += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "th" and self._cell is not None:
            self.headers[-1].append(self._cell.strip())
            self._cell = None
        elif tag == "details":
            self.open_details -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell += data


def rendered(markdown: str) -> Tables:
    found = Tables()
    found.feed(cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE))
    return found


def long_report(sections: int) -> str:
    table = ["| column | rows | roc_auc |", "|---|---:|---:|",
             *[f"| value {i} | {i:,} | 0.{i:04d} |" for i in range(60)]]
    epochs = range(1, 31)
    chart = _line_chart("Loss by epoch", "epoch", [str(i) for i in epochs], "loss",
                        {"training loss": [1 / i for i in epochs], "evaluation loss": [1.1 / i for i in epochs]})
    lines = ["<!-- modelci-report -->", "# modelci report", ""]
    for i in range(sections):
        lines += [f"<details><summary>Metrics by column {i}</summary>", "", *table, "", "</details>",
                  "<details><summary>Training curves</summary>", *chart, "", "</details>", ""]
    return "\n".join(lines) + "\n"


def test_a_short_report_is_left_as_it_is() -> None:
    report = long_report(2)
    assert fit(report) == report


def test_a_long_report_is_cut_to_the_comment_limit_with_a_note_and_renders_whole() -> None:
    report = long_report(200)
    assert len(report) > 4 * COMMENT_LIMIT
    cut = fit(report)
    assert len(cut) <= COMMENT_LIMIT
    assert cut.rstrip().endswith(CUT_NOTE.format(limit=COMMENT_LIMIT))
    assert "the whole report is `report-full.md`" in cut
    assert cut.count("```") % 2 == 0  # no chart cut in half
    found = rendered(cut)
    assert found.open_details == 0
    assert len(found.headers) > 10
    assert all(h == ["column", "rows", "roc_auc"] for h in found.headers)
    assert len(found.code) > 10
    assert set(found.code) == {"mermaid"}


def test_cutting_at_any_length_keeps_the_markdown_whole() -> None:
    report = long_report(6)
    for limit in range(2_000, len(report), 997):
        cut = fit(report, limit)
        assert len(cut) <= limit
        assert cut.count("```") % 2 == 0
        assert rendered(cut).open_details == 0


def test_charts_are_mermaid_xy_charts_with_their_series_named() -> None:
    chart = "\n".join(_line_chart("ROC curve", "false positive rate", ["0", "0.5", "1"], "true positive rate",
                                  {"candidate": [0.0, 0.8, 1.0], "baseline": [0.0, 0.7, 1.0]}))
    assert rendered(chart).code == ["mermaid"]
    assert re.search(r'x-axis "false positive rate" \["0", "0.5", "1"\]', chart)
    assert chart.count("  line [") == 2
    assert "Lines: candidate (blue), baseline (orange)." in chart


def test_a_value_with_a_bar_stays_in_its_cell() -> None:
    table = f"| value | rows |\n|---|---:|\n| `{_cell(repr('a|b'))}` | 3 |\n| {_cell('x|y')} | 4 |\n"
    html = cmarkgfm.github_flavored_markdown_to_html(table)
    assert html.count("<td") == 4
    assert "<code>'a|b'</code>" in html


def test_each_class_and_the_confusion_matrix_render_as_tables() -> None:
    from modelci.report.markdown import _per_class

    metrics = {"classes": ["circle", "square", "tri|angle"], "confusion_matrix": [[8, 2, 0], [1, 9, 0], [0, 0, 0]]}
    markdown = "\n".join(_per_class(metrics))
    found = rendered(markdown)
    assert found.headers == [["class", "rows", "precision", "recall", "F1"],
                             ["true ↓ predicted →", "circle", "square", "tri|angle"]]
    assert found.open_details == 0
    assert "| circle | 10 | 0.8889 | 0.8000 | 0.8421 |" in markdown  # 8 of the 9 called circle; 8 of the 10 circles
    assert "| tri\\|angle | 0 | – | – | – |" in markdown  # no row, none called: undefined, not zero
    assert _per_class({"classes": [], "confusion_matrix": None}) == []  # regression
