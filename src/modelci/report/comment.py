"""modelci's one pull-request comment: found by its hidden marker, then created or updated through GitHub's REST API.

The comment is sticky. Each run looks through every page of the pull request's comments for the
first (oldest) one of its own and updates it, or creates it when there is none: one write at most,
and none when the body has not changed. A comment is modelci's own when its body starts with the
marker and a bot wrote it (`user.type` "Bot": the workflow's GITHUB_TOKEN posts as
`github-actions[bot]`, a GitHub App's token as the App's bot), so a person's comment that quotes the
report is never overwritten. A personal access token posts as its person, so with one each run finds
no comment of its own and adds another: give the step GITHUB_TOKEN or a GitHub App's token.

Rate limits are honoured as GitHub documents them (`retry-after`; `x-ratelimit-remaining: 0` until
`x-ratelimit-reset`; for a secondary limit without either, a minute and then exponentially longer);
5xx answers and lost connections are retried with backoff. Every wait comes out of one budget, and a
wait that would go past it fails at once rather than sleeping in vain; no request starts once the
budget is spent, and the pages are followed at most 100 deep and never round in a circle.

URLs are built from `GITHUB_API_URL`, so GitHub Enterprise Server (`https://HOST/api/v3`) works too.
Every failure raises `CommentError`, whose message says what is wrong and how to fix it and never
holds the token; the caller reports it as a warning, since a comment that could not be written never
changes the verdict.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import idna
import requests

from modelci import __version__
from modelci.report.markdown import COMMENT_LIMIT, MARKER

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
PER_PAGE = 100  # the most GitHub lists in one page
MAX_PAGES = 100  # 10,000 comments: more is no real pull request, but a server that keeps saying "next"
TIMEOUT = (10, 30)  # connect, read
RETRIES = 6  # waits in one run, in all; GitHub asks clients to give up after some number of retries
SECONDARY_LIMIT_WAIT = 60.0  # GitHub: "wait for at least one minute", then exponentially longer
RATE_LIMIT_STATUS = frozenset({403, 429})
SERVER_ERRORS = frozenset({500, 502, 503, 504})
BOT = "Bot"  # `user.type` of github-actions[bot] and of GitHub Apps; a person is "User"
# NOTE: failures that may pass, worth a retry; a body cut short (ChunkedEncodingError) is a lost connection too
LOST = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
PULL_REF = re.compile(r"^refs/pull/(\d+)/(?:merge|head)$")
PERMISSIONS_HINT = ("The workflow's token needs `pull-requests: write` (or `issues: write`) in the job's "
                    "`permissions:`. A pull request from a fork gets a read-only token whatever the workflow asks for, "
                    "so comment on forks' pull requests from a `workflow_run` workflow instead.")

# NOTE: module-level so that tests replace them and record the waits instead of sleeping. One wall
# clock serves both the budget and `x-ratelimit-reset`, which GitHub gives in epoch seconds.
_sleep: Callable[[float], None] = time.sleep
_now: Callable[[], float] = time.time


class CommentError(Exception):
    """The comment could not be written; the message says why and how to fix it."""


class _MaybeDone(Exception):
    """A request that must not be sent twice failed in a way that may have carried it out anyway."""


@dataclass(frozen=True)
class Posted:
    """What a run did to the pull request's comment."""

    action: Literal["created", "updated", "unchanged"]
    comment_id: int
    html_url: str


@dataclass(frozen=True)
class _Pause:
    seconds: float
    reason: str


# -- where: the pull request of this workflow run ---------------------------------------------------


def target_from_env(environ: Mapping[str, str]) -> tuple[str, str, int] | None:
    """(API URL, owner/name, pull-request number) from GitHub Actions' environment; None outside a pull request."""
    repository = environ.get("GITHUB_REPOSITORY", "")
    number = _number_from_event(environ.get("GITHUB_EVENT_PATH", ""))
    if number is None:
        number = _number_from_ref(environ.get("GITHUB_REF", ""))
    if not repository or number is None:
        return None
    return _api_url(environ), repository, number


def _api_url(environ: Mapping[str, str]) -> str:
    return (environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")


def pull_request_to_comment(environ: Mapping[str, str], token: str) -> tuple[str, str, int]:
    """(API URL, owner/name, number) of the pull request to comment on: this run's own, or in a
    `workflow_run` workflow (the fork-safe way), the one whose head is the commit that run checked."""
    if environ.get("GITHUB_EVENT_NAME") == "workflow_run":
        api_url = _api_url(environ)
        repository = environ.get("GITHUB_REPOSITORY", "")
        run = event_of(environ.get("GITHUB_EVENT_PATH", "")).get("workflow_run")
        if not repository or not isinstance(run, dict):
            raise CommentError("a workflow_run workflow without GITHUB_REPOSITORY or its event's workflow_run; run "
                               "modelci in GitHub Actions")
        return api_url, repository, pull_request_of_run(run, api_url=api_url, repository=repository, token=token)
    target = target_from_env(environ)
    if target is None:
        raise CommentError("not a pull request's workflow run (no pull request number in GITHUB_EVENT_PATH or "
                           "GITHUB_REF)")
    return target


def event_of(path: str) -> dict[str, Any]:
    """The workflow run's event payload, or nothing when it cannot be read."""
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
    return event if isinstance(event, dict) else {}


def _number_from_event(path: str) -> int | None:
    """`pull_request.number`, or `issue.number` when the issue is a pull request, from the event's payload."""
    event = event_of(path)  # NOTE: unreadable or absent, GITHUB_REF may still say which pull request this is
    pull, issue = event.get("pull_request"), event.get("issue")
    if isinstance(pull, dict):
        number = pull.get("number")
    elif isinstance(issue, dict) and issue.get("pull_request"):  # NOTE: a comment on a plain issue is no PR
        number = issue.get("number")
    else:
        return None
    return number if isinstance(number, int) and number > 0 else None


def _number_from_ref(ref: str) -> int | None:
    """N from `refs/pull/N/merge`, the ref a `pull_request` run checks out."""
    found = PULL_REF.match(ref)
    return int(found.group(1)) if found else None


# -- what: the one comment, found and written ------------------------------------------------------


def with_marker(body: str, marker: str = MARKER) -> str:
    """The body as it is when it starts with the marker, else with the marker on a line of its own before it:
    only a comment that starts with it is found again."""
    return body if body.lstrip().startswith(marker) else f"{marker}\n{body}"


def upsert(body: str, *, api_url: str, repository: str, number: int, token: str, marker: str = MARKER,
           budget_s: float = 120.0, session: requests.Session | None = None) -> Posted:
    """Create or update modelci's comment on pull request `number`: one write at most, none when unchanged."""
    text = with_marker(body, marker)
    _check_length(text)
    with _connected(api_url, repository, number, token, budget_s, session) as api:
        return _upsert(api, text, marker)


def pull_request_of_run(run: Mapping[str, Any], *, api_url: str, repository: str, token: str,
                        budget_s: float = 60.0, session: requests.Session | None = None) -> int:
    """The open pull request whose newest commit is the head of `run`, the `workflow_run` of a
    `workflow_run` event, as GitHub's API says. The run's own files (a fork's report) are never
    asked which pull request they belong to: the event, which GitHub wrote, gives the head commit."""
    owner, branch, sha = _head_of(run)
    with _connected(api_url, repository, 0, token, budget_s, session) as api:
        url = f"{api.repo_url}/pulls?{urlencode({'state': 'open', 'head': f'{owner}:{branch}', 'per_page': PER_PAGE})}"
        pulls = _json(api, "GET", url, api.call("GET", url, ok=200))
        for pull in pulls if isinstance(pulls, list) else []:
            head = pull.get("head") if isinstance(pull, dict) else None
            if isinstance(head, dict) and head.get("sha") == sha and isinstance(pull.get("number"), int):
                return int(pull["number"])
    raise CommentError(f"no open pull request of {repository} has {owner}:{branch} at {sha} as its head, the "
                       "commit the workflow run checked; nothing was written. The pull request may have been closed, "
                       "or pushed to again (its newer run comments instead).")


def _head_of(run: Mapping[str, Any]) -> tuple[str, str, str]:
    repository = run.get("head_repository")
    owner = repository.get("owner", {}).get("login") if isinstance(repository, dict) else None
    branch, sha = run.get("head_branch"), run.get("head_sha")
    if not (isinstance(owner, str) and isinstance(branch, str) and isinstance(sha, str)):
        raise CommentError("the workflow_run event names no head repository, branch and commit; run `modelci comment` "
                           "from a workflow triggered by `workflow_run` of the pull-request workflow")
    return owner, branch, sha


@contextmanager
def _connected(api_url: str, repository: str, number: int, token: str, budget_s: float,
               session: requests.Session | None) -> Iterator[_Api]:
    """The API of one repository's pull request, checked before anything is sent; a message never holds the token."""
    _check_api_url(api_url)
    _check_token(token)
    own = session if session is not None else requests.Session()
    try:
        yield _Api(api_url, repository, number, token, budget_s, own)
    except CommentError as exc:
        # NOTE: a message may quote what a server or requests said; the token must not reach the log
        if token and token in str(exc):
            raise CommentError(str(exc).replace(token, "***")) from None
        raise
    finally:
        if session is None:
            own.close()


def _check_length(text: str) -> None:
    if len(text) > COMMENT_LIMIT:
        raise CommentError(f"the comment is {len(text):,} characters, over GitHub's limit of {COMMENT_LIMIT:,}; "
                           "nothing was sent.")


def _check_api_url(api_url: str) -> None:
    """An http(s) URL with a valid host and port. requests would otherwise fail in ways that say less, and
    differently from one version to the next: some send `exa mple.com` to DNS as `exa%20mple.com`."""
    try:
        parts = urlsplit(api_url)
        usable = (parts.scheme in ("http", "https") and _is_host(parts.hostname or "")
                  and (parts.port is None or parts.port > 0))
    except ValueError:  # NOTE: a port that is no number, an unclosed `[` of an IPv6 address
        usable = False
    if not usable:
        raise CommentError(f"GITHUB_API_URL {api_url!r} is not an http(s) URL with a host; nothing was sent. It is "
                           f"{DEFAULT_API_URL} on github.com (or leave it unset) and https://HOST/api/v3 on GitHub "
                           "Enterprise Server.")


_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def _is_host(host: str) -> bool:
    """An IP address or a DNS name (international names in their IDNA form)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        # NOTE: as requests encodes an international name (IDNA 2008, with UTS 46 mapping)
        ascii_host = host.lower() if host.isascii() else idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return False
    labels = ascii_host.removesuffix(".").split(".")
    return len(ascii_host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def _check_token(token: str) -> None:
    """GitHub's tokens are printable ASCII without spaces; anything else fails inside requests, quoting the token."""
    if not token:
        raise CommentError("the token is empty; nothing was sent. Pass the workflow's GITHUB_TOKEN: "
                           "`env: {GITHUB_TOKEN: ${{ github.token }}}`.")
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise CommentError("the token holds a space, a line break or a character that is not ASCII (often a newline "
                           "at the end of a secret or file); nothing was sent. Pass the token exactly as GitHub "
                           "gave it, e.g. the workflow's `${{ github.token }}`.")


def _upsert(api: _Api, text: str, marker: str) -> Posted:
    uncertain = False
    while True:
        earlier = _find(api, marker)
        if earlier is not None:
            posted = _update(api, earlier, text)
            # NOTE: found after a POST that failed uncertainly: that POST did create it
            return replace(posted, action="created") if uncertain and posted.action == "unchanged" else posted
        try:
            return _create(api, text)
        except _MaybeDone:
            # NOTE: the POST failed (5xx, lost connection) in a way that may have created the comment
            # all the same: look again rather than post a second one. `_Api` bounds the rounds.
            uncertain = True


def _find(api: _Api, marker: str) -> dict[str, Any] | None:
    """modelci's oldest comment, over every page of the pull request's comments."""
    url: str | None = f"{api.repo_url}/issues/{api.number}/comments?per_page={PER_PAGE}"
    read: set[str] = set()
    while url is not None:
        read.add(url)
        response = api.call("GET", url, ok=200)
        comments = _json(api, "GET", url, response)
        if not isinstance(comments, list):
            raise CommentError(f"GitHub's list of comments at {url} is not a list; is {api.api} GitHub's REST API? "
                               "Check GITHUB_API_URL.")
        # NOTE: GitHub lists an issue's comments oldest first, so the first match is the oldest
        for comment in comments:
            if isinstance(comment, dict) and _is_ours(comment, marker):
                return comment
        url = _next_page(api, response, read)
    return None


def _is_ours(comment: dict[str, Any], marker: str) -> bool:
    """A bot's comment that starts with the marker; a person's comment may quote the report, marker and all."""
    user = comment.get("user")
    body = comment.get("body")
    return (isinstance(user, dict) and user.get("type") == BOT and isinstance(body, str)
            and body.lstrip().startswith(marker))


def _next_page(api: _Api, response: requests.Response, read: set[str]) -> str | None:
    """The `Link` header's rel="next", used as GitHub gives it; only on the API's host, since it gets the token,
    never a page already read, and not past `MAX_PAGES`, so that a server that keeps saying "next" cannot keep
    modelci going for ever."""
    url = response.links.get("next", {}).get("url")
    if url is None:
        return None
    url = str(url)
    if urlsplit(url)[:2] != urlsplit(api.api)[:2]:
        raise CommentError(f"GitHub's next page of comments is at {url}, outside {api.api}; modelci does not send the "
                           "token there. Check GITHUB_API_URL.")
    if url in read:
        raise CommentError(f"GitHub's next page of comments, {url}, is one already read: the pages go round in a "
                           f"circle, so the comment was not written. Check GITHUB_API_URL ({api.api}): something "
                           "other than GitHub's REST API, such as a proxy, may be answering.")
    if len(read) >= MAX_PAGES:
        raise CommentError(f"pull request #{api.number} of {api.repository} has more than {MAX_PAGES} pages of "
                           f"comments ({MAX_PAGES * PER_PAGE:,} comments), the most modelci looks through for its own; "
                           "the comment was not written. Delete or hide old comments if there are really that many; "
                           f"otherwise the server at {api.api} keeps giving a next page: check GITHUB_API_URL.")
    return url


def _update(api: _Api, comment: dict[str, Any], text: str) -> Posted:
    listed = _posted(api, "unchanged", comment, "GET", f"{api.repo_url}/issues/{api.number}/comments")
    if comment.get("body") == text:
        return listed
    # NOTE: a PATCH with the same body is harmless twice, so it is retried like a read
    url = f"{api.repo_url}/issues/comments/{listed.comment_id}"
    updated = _json(api, "PATCH", url, api.call("PATCH", url, ok=200, body={"body": text}))
    return _posted(api, "updated", updated, "PATCH", url)


def _create(api: _Api, text: str) -> Posted:
    url = f"{api.repo_url}/issues/{api.number}/comments"
    created = _json(api, "POST", url, api.call("POST", url, ok=201, body={"body": text}, repeatable=False))
    return _posted(api, "created", created, "POST", url)


def _json(api: _Api, method: str, url: str, response: requests.Response) -> Any:
    """The answer's JSON; a proxy's or a login page's HTML in its place is a `CommentError` that says so."""
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("Content-Type") or "no Content-Type"
        start = " ".join(response.text.split())[:80]
        raise CommentError(f"the answer to {method} {url} ({response.status_code}, {kind}) is not JSON: {start!r}. "
                           f"Something other than GitHub's REST API, such as a proxy or a login page, answered at "
                           f"{api.api}; check GITHUB_API_URL and the runner's proxy settings.{_maybe(method)}"
                           ) from None


def _posted(api: _Api, action: Literal["created", "updated", "unchanged"], comment: Any, method: str,
            url: str) -> Posted:
    """What was written, from a comment as GitHub gives it; one without its `id` and `html_url` is no comment."""
    comment_id = comment.get("id") if isinstance(comment, dict) else None
    html_url = comment.get("html_url") if isinstance(comment, dict) else None
    if isinstance(comment_id, bool) or not isinstance(comment_id, int) or not isinstance(html_url, str):
        raise CommentError(f"the answer to {method} {url} holds a comment without a numeric `id` and an `html_url`; "
                           f"is {api.api} GitHub's REST API? Check GITHUB_API_URL.{_maybe(method)}")
    return Posted(action, comment_id, html_url)


def _maybe(method: str) -> str:
    """After a write whose answer is unreadable, GitHub may have carried it out all the same."""
    return "" if method == "GET" else " The comment may or may not have been written; the next run finds it if so."


# -- how: requests, waits and refusals ----------------------------------------------------------------


class _Api:
    """Requests about one pull request, sharing one budget of time and retries."""

    def __init__(self, api_url: str, repository: str, number: int, token: str, budget_s: float,
                 session: requests.Session) -> None:
        self.api = api_url.rstrip("/")
        self.repository, self.number = repository, number
        self.repo_url = f"{self.api}/repos/{repository}"
        self.session = session
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                        "X-GitHub-Api-Version": API_VERSION, "User-Agent": f"modelci/{__version__}"}
        self.budget_s = budget_s
        self.deadline = _now() + budget_s
        self.retries = 0

    def call(self, method: str, url: str, *, ok: int, body: dict[str, str] | None = None,
             repeatable: bool = True) -> requests.Response:
        """Send a request, waiting and sending it again while GitHub asks to (rate limits) or fails (5xx,
        lost connection); `_MaybeDone` instead of a second send when it is not `repeatable` and may have
        been carried out. Any other answer than `ok` is a `CommentError`."""
        while True:
            self._check_deadline(method, url)
            try:
                response = self.session.request(method, url, headers=self.headers, json=body, timeout=TIMEOUT)
            except requests.exceptions.SSLError as exc:  # NOTE: a ConnectionError, but no retry mends a certificate
                raise CommentError(f"the TLS connection to {self.api} failed ({_quoted(exc)}); nothing was sent. On "
                                   "GitHub Enterprise Server with a private certificate authority, point "
                                   "REQUESTS_CA_BUNDLE at its certificate; otherwise check GITHUB_API_URL.") from None
            except LOST as exc:
                self._wait(_Pause(_backoff(self.retries), f"cannot reach {self.api} ({exc.__class__.__name__})"))
                if not repeatable:
                    raise _MaybeDone from None
                continue
            except (requests.RequestException, ValueError) as exc:
                # NOTE: requests lets a few of urllib3's ValueErrors through; _check_api_url stops those known
                raise _failure(self, method, url, exc) from None
            limited = _rate_limit_pause(response, self.retries)
            if limited is not None:  # NOTE: refused, so not carried out: safe to send again, even a POST
                self._wait(limited)
                continue
            if response.status_code in SERVER_ERRORS:
                self._wait(_server_error_pause(method, url, response, self.retries))
                if not repeatable:
                    raise _MaybeDone
                continue
            if response.status_code != ok:
                raise _refusal(self, method, url, response)
            return response

    def _check_deadline(self, method: str, url: str) -> None:
        """No request once the budget is spent, even when every answer so far came at once but slowly."""
        if _now() >= self.deadline:
            raise CommentError(f"the comment's budget of {self.budget_s:.0f} s ran out before {method} {url}, so the "
                               "comment was not written: GitHub answered slowly. Re-run the job later.")

    def _wait(self, pause: _Pause) -> None:
        """Sleep before the next try, or fail when the retries or the budget would run out."""
        if self.retries >= RETRIES:
            raise CommentError(f"{pause.reason}, still after {self.retries} retries; the comment was not written. "
                               "Re-run the job later.")
        left = self.deadline - _now()
        if pause.seconds > left:
            raise CommentError(f"{pause.reason}; waiting {pause.seconds:.0f} s would go past the comment's budget of "
                               f"{self.budget_s:.0f} s ({max(left, 0.0):.0f} s left), so the comment was not written. "
                               f"Re-run the job after {_utc(_now() + pause.seconds)}.")
        self.retries += 1
        _sleep(pause.seconds)


def _backoff(retries: int) -> float:
    return min(2.0 ** retries, 16.0)


def _seconds(value: str | None) -> float | None:
    """A header's whole number of seconds; None when absent or not a number (GitHub sends whole seconds)."""
    return float(value) if value is not None and value.strip().isdigit() else None


def _rate_limit_pause(response: requests.Response, retries: int) -> _Pause | None:
    """How long GitHub asks to wait when a 403 or 429 is a rate limit, as its documentation says; None otherwise."""
    code, headers = response.status_code, response.headers
    if code not in RATE_LIMIT_STATUS:
        return None
    retry_after = _seconds(headers.get("retry-after"))
    if retry_after is not None:
        return _Pause(retry_after, f"GitHub's rate limit refused the request ({code}) and asked for a wait of "
                                   f"{retry_after:.0f} s (retry-after)")
    reset = _seconds(headers.get("x-ratelimit-reset"))
    if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
        # NOTE: at least a second, in case this machine's clock runs ahead of GitHub's
        return _Pause(max(reset - _now(), 1.0), f"the token's API rate limit is used up ({code}) until {_utc(reset)} "
                                                "(x-ratelimit-reset)")
    message = _github_message(response)
    if code == 429 or "rate limit" in message.lower():
        return _Pause(SECONDARY_LIMIT_WAIT * 2.0 ** retries,
                      f"GitHub's secondary rate limit refused the request ({code}: {message})")
    return None


def _server_error_pause(method: str, url: str, response: requests.Response, retries: int) -> _Pause:
    retry_after = _seconds(response.headers.get("retry-after"))
    return _Pause(retry_after if retry_after is not None else _backoff(retries),
                  f"GitHub answered {response.status_code} to {method} {url}")


def _refusal(api: _Api, method: str, url: str, response: requests.Response) -> CommentError:
    code, message = response.status_code, _github_message(response)
    where = f"pull request #{api.number} of {api.repository}"
    if code == 401:
        return CommentError(f"GitHub refused the token (401: {message}): it is missing, expired or not a token for "
                            f"{api.api}. Pass the workflow's GITHUB_TOKEN. {PERMISSIONS_HINT}")
    if code == 403:
        return CommentError(f"GitHub did not let the token {method} the comment on {where} (403: {message}). "
                            f"{PERMISSIONS_HINT}")
    if code == 404:
        return CommentError(f"GitHub answered 404 to {method} {url}: {where} does not exist, or the token cannot see "
                            "it. Check GITHUB_REPOSITORY and the pull-request number, and that the token is for this "
                            "repository.")
    if code == 422:
        return CommentError(f"GitHub rejected the comment on {where} (422: {message}). Shorten or fix the report.")
    return CommentError(f"GitHub answered {code} to {method} {url}: {message}")


def _failure(api: _Api, method: str, url: str, exc: Exception) -> CommentError:
    """A request that requests could not send or whose answer it could not take, and how to fix it."""
    name = exc.__class__.__name__
    if isinstance(exc, requests.TooManyRedirects):
        return CommentError(f"{method} {url} was redirected more than {api.session.max_redirects} times ({name}), so "
                            f"the comment was not written. Check GITHUB_API_URL ({api.api}): a proxy or a login page "
                            "may be sending the request round in a circle.")
    return CommentError(f"{method} {url} failed ({name}: {_quoted(exc)}); the comment was not written. Re-run the "
                        f"job; if it fails again, check GITHUB_API_URL ({api.api}) and the runner's network and proxy "
                        f"settings.{_maybe(method)}")


def _quoted(exc: Exception) -> str:
    """An exception's message, cut short: requests' messages repeat the connection pool and the URL at length."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else f"{text[:300]}…"


def _github_message(response: requests.Response) -> str:
    """GitHub's `message` and its `errors`, from an error's JSON body; the start of the text otherwise."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason or "no explanation"
    if not isinstance(data, dict):
        return str(data)[:300]
    message = str(data.get("message") or "no message")
    errors = data.get("errors")
    details = [_error_detail(e) for e in errors] if isinstance(errors, list) else []
    return f"{message}: {'; '.join(details)}" if details else message


def _error_detail(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    if error.get("message"):
        return str(error["message"])
    return " ".join(f"{key}={error[key]}" for key in ("resource", "field", "code") if key in error)


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
