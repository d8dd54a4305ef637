"""All GitHub Actions I/O: step outputs, the job summary, annotations and log groups.

Outside Actions (no `GITHUB_ACTIONS=true`) every function degrades to plain printing, so each
command reads the same on a laptop. Progress goes to stderr; stdout stays free for data.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def in_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def on_pull_request() -> bool:
    """Whether this is a pull request's workflow run in GitHub Actions."""
    return in_actions() and os.environ.get("GITHUB_EVENT_NAME") in ("pull_request", "pull_request_target")


def log(message: str) -> None:
    # NOTE: in a torchrun job (several training processes) only the first process speaks.
    if os.environ.get("RANK", "0") == "0":
        print(message, file=sys.stderr, flush=True)


@contextmanager
def group(title: str) -> Iterator[None]:
    """A collapsible log group in Actions, a header line with the elapsed time elsewhere."""
    start = time.perf_counter()
    log(f"::group::{title}" if in_actions() else f"==> {title}")
    try:
        yield
    finally:
        if in_actions():
            log("::endgroup::")
        log(f"    {title}: {time.perf_counter() - start:.1f}s")


def _escape_data(value: str) -> str:
    # NOTE: workflow-command escaping as in actions/toolkit's command.ts.
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def annotate(level: str, message: str, *, file: str | None = None, line: int | None = None) -> None:
    """`::error file=…::message` in Actions; `error: message (file)` elsewhere."""
    if in_actions():
        props = []
        if file:
            props.append(f"file={_escape_property(file)}")
            if line:
                props.append(f"line={line}")
        sep = " " + ",".join(props) if props else ""
        log(f"::{level}{sep}::{_escape_data(message)}")
    else:
        where = f" ({file}{f':{line}' if line else ''})" if file else ""
        log(f"{level}: {message}{where}")


def error(message: str, *, file: str | None = None, line: int | None = None) -> None:
    annotate("error", message, file=file, line=line)


def warning(message: str, *, file: str | None = None, line: int | None = None) -> None:
    annotate("warning", message, file=file, line=line)


_warned: set[str] = set()


def warning_once(message: str) -> None:
    """A warning the first time only: for what a long-running process (the server) may meet again and again."""
    if message not in _warned:
        _warned.add(message)
        warning(message)


def set_output(name: str, value: str) -> None:
    """Write a step output; multi-line values use a random heredoc delimiter, as GitHub documents."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    delimiter = f"ghadelimiter_{uuid.uuid4()}"
    with open(path, "a", encoding="utf-8") as handle:
        if "\n" in value:
            handle.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
        else:
            handle.write(f"{name}={value}\n")


def add_summary(markdown: str) -> None:
    """Append markdown to the job summary; a no-op outside Actions (the report file has it)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with Path(path).open("a", encoding="utf-8") as handle:
            handle.write(markdown.rstrip("\n") + "\n")
