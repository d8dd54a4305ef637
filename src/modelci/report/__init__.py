"""The markdown report: report.md, the job summary and (later) the pull-request comment."""
