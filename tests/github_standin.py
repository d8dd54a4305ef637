"""A stand-in for GitHub's REST API on loopback: the issue-comment endpoints of modelci's sticky comment.

It speaks GitHub's protocol rather than mocking modelci's functions: bearer-token authentication
with GitHub's JSON errors (401), pages with `per_page` (at most 100) and `page` and a `Link` header
in GitHub's own form (`/repositories/{id}/…` URLs on the request's base URL, rel="prev", "next",
"last", "first"), GitHub's limit of 65,536 characters on a body (422), 404 for what does not exist,
`x-ratelimit-*` headers on every answer, and an optional path prefix (`/api/v3`) as on GitHub
Enterprise Server. A comment created through the API is authored by `github-actions[bot]`, a "Bot",
as with the workflow's GITHUB_TOKEN; a test adds other people's and bots' comments with `add_comment`.
Tests script failures with `fail_next` (a rate limit, a 502) and `cut_next` (an answer whose
connection drops halfway through its body) and read every request in `requests`.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loopback import LoopbackServer

MAX_BODY = 65_536
DOCS = "https://docs.github.com/rest"
# GitHub's error bodies, for `fail_next`.
SECONDARY_LIMIT = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                              "again. If you reach out to GitHub Support for help, please include the request ID "
                              "0000:0000:0000000:0000000:00000000.",
                   "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api", "status": "403"}
PRIMARY_LIMIT = {"message": "API rate limit exceeded for installation ID 1.",
                 "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api", "status": "403"}
NOT_ACCESSIBLE = {"message": "Resource not accessible by integration",
                  "documentation_url": f"{DOCS}/issues/comments#create-an-issue-comment", "status": "403"}
LIST = re.compile(r"^/(?:repos/(?P<name>[^/]+/[^/]+)|repositories/(?P<id>\d+))/issues/(?P<number>\d+)/comments$")
ONE = re.compile(r"^/repos/(?P<name>[^/]+/[^/]+)/issues/comments/(?P<comment>\d+)$")
PULLS = re.compile(r"^/repos/(?P<name>[^/]+/[^/]+)/pulls$")
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
ACTIONS_BOT = "github-actions[bot]"  # who the workflow's GITHUB_TOKEN posts as; its `type` is "Bot"
_UNREADABLE = object()  # a body that is not JSON, told apart from no body; GitHub answers it 400


@dataclass(frozen=True)
class Request:
    """One request as the stand-in received it; `path` includes the prefix."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: Any


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON, or str sent as text/html (a proxy's 502 page)
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False  # drop the connection halfway through the body


@dataclass(frozen=True)
class _Fault:
    answer: Answer | None  # None: the real answer, cut
    method: str | None
    after_handling: bool


@dataclass(frozen=True)
class _Repository:
    id: int
    name: str
    pulls: frozenset[int]


@dataclass
class _Comment:
    id: int
    repository: _Repository
    number: int
    body: str
    login: str
    user_type: str  # "User" or "Bot"
    created: datetime
    updated: datetime


class GitHubStandIn(LoopbackServer):
    """GitHub's issue-comment API for the repositories and pull requests a test adds, on 127.0.0.1."""

    def __init__(self, *, token: str = "test-token", prefix: str = "", max_body: int = MAX_BODY) -> None:
        self.token, self.prefix, self.max_body = token, prefix.rstrip("/"), max_body
        self.requests: list[Request] = []
        self._repositories: dict[str, _Repository] = {}
        self._comments: dict[int, _Comment] = {}
        self._faults: deque[_Fault] = deque()
        self._heads: dict[tuple[str, int], tuple[str, str, str]] = {}  # (repository, number) -> owner, branch, sha
        self._lock = threading.Lock()
        self._ids = iter(range(1_000_001, 10**9))
        self._remaining = 5000
        server = _Server(("127.0.0.1", 0), _Handler)
        server.standin = self
        super().__init__(server)

    @property
    def url(self) -> str:
        """The API's base URL, as GITHUB_API_URL would give it."""
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    # -- set up and inspect, from a test ------------------------------------------------------------

    def add_repository(self, name: str, pulls: tuple[int, ...] = (1,)) -> int:
        repository = _Repository(next(self._ids), name, frozenset(pulls))
        self._repositories[name.lower()] = repository  # NOTE: GitHub's names are case-insensitive
        return repository.id

    def set_head(self, name: str, number: int, owner: str, branch: str, sha: str) -> None:
        """Pull request `number` proposes `owner:branch`, whose newest commit is `sha`."""
        with self._lock:
            self._heads[(name.lower(), number)] = (owner, branch, sha)

    def add_comment(self, name: str, number: int, body: str, login: str = "octocat", user_type: str = "User") -> int:
        """A comment by someone, a person ("User") unless `user_type` is "Bot"; its id."""
        with self._lock:
            return self._store(self._repositories[name.lower()], number, body, login, user_type).id

    def comments_on(self, name: str, number: int) -> list[dict[str, Any]]:
        """The pull request's comments, oldest first, as GitHub would list them."""
        with self._lock:
            repository = self._repositories[name.lower()]
            return [self._json(c, self.url) for c in self._thread_of(repository, number)]

    def fail_next(self, status: int, headers: dict[str, str] | None = None, body: Any = None, *,
                  method: str | None = None, after_handling: bool = False) -> None:
        """Answer the next request (of `method`, if given) with this; with `after_handling`, only after carrying
        it out, as a proxy does that loses GitHub's answer."""
        with self._lock:
            self._faults.append(_Fault(Answer(status, body, dict(headers or {})), method, after_handling))

    def cut_next(self, method: str | None = None) -> None:
        """Carry out the next request (of `method`, if given) but drop the connection halfway through the body of
        its answer, as a lost connection does after the headers came."""
        with self._lock:
            self._faults.append(_Fault(None, method, after_handling=True))

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]

    # -- serving --------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        split = urlsplit(target)
        query = parse_qs(split.query)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = _UNREADABLE
        with self._lock:
            self.requests.append(Request(method, split.path, query, headers, body))
            fault = self._take_fault(method)
            if fault is not None and fault.answer is not None and not fault.after_handling:
                return self._finish(fault.answer)
            base = f"http://{headers.get('host', '127.0.0.1')}{self.prefix}"
            answer = self._route(method, split.path, query, headers, body, base)
            if fault is None:
                return self._finish(answer)
            return self._finish(replace(answer, cut=True) if fault.answer is None else fault.answer)

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method in (None, method):
                self._faults.remove(fault)
                return fault
        return None

    def _finish(self, answer: Answer) -> Answer:
        """GitHub's headers on every answer; the answer's own headers win."""
        self._remaining = max(self._remaining - 1, 0)
        headers = {"Content-Type": "application/json; charset=utf-8", "x-ratelimit-limit": "5000",
                   "x-ratelimit-remaining": str(self._remaining), "x-ratelimit-used": str(5000 - self._remaining),
                   "x-ratelimit-reset": "4102444800", "x-ratelimit-resource": "core"}
        if isinstance(answer.body, str):
            headers["Content-Type"] = "text/html"
        headers.update(answer.headers)
        return Answer(answer.status, answer.body, headers, answer.cut)

    def _route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any,
               base: str) -> Answer:
        if self.prefix and not path.startswith(f"{self.prefix}/"):
            return _error(404, "Not Found")
        path = path[len(self.prefix):]
        if not self._authorized(headers.get("authorization", "")):
            return _error(401, "Bad credentials")
        if body is _UNREADABLE:
            return _error(400, "Problems parsing JSON")
        listing, one, pulls = LIST.match(path), ONE.match(path), PULLS.match(path)
        if pulls and method == "GET":
            return self._pulls(pulls["name"], query)
        if listing and method in ("GET", "POST"):
            repository = self._repository(listing["name"], listing["id"])
            number = int(listing["number"])
            if repository is None or number not in repository.pulls:
                return _error(404, "Not Found")
            if method == "GET":
                return self._list(repository, number, query, base)
            return self._create(repository, number, body, base)
        if one and method in ("GET", "PATCH"):
            repository = self._repository(one["name"], None)
            comment = self._comments.get(int(one["comment"]))
            if repository is None or comment is None or comment.repository != repository:
                return _error(404, "Not Found")
            return Answer(200, self._json(comment, base)) if method == "GET" else self._update(comment, body, base)
        return _error(404, "Not Found")

    def _pulls(self, name: str, query: dict[str, list[str]]) -> Answer:
        """The open pull requests, filtered by `head=OWNER:BRANCH` as GitHub does."""
        if self._repository(name, None) is None:
            return _error(404, "Not Found")
        wanted = (query.get("head") or [""])[0]
        found = [{"number": number, "state": "open",
                  "head": {"label": f"{owner}:{branch}", "ref": branch, "sha": sha,
                           "repo": {"full_name": f"{owner}/{name.split('/')[1]}"}}}
                 for (repository, number), (owner, branch, sha) in sorted(self._heads.items())
                 if repository == name.lower() and (not wanted or wanted == f"{owner}:{branch}")]
        return Answer(200, found)

    def _authorized(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        # NOTE: GitHub takes `token` as well as `Bearer`
        return scheme.lower() in ("bearer", "token") and token == self.token

    def _repository(self, name: str | None, number: str | None) -> _Repository | None:
        if name is not None:
            return self._repositories.get(name.lower())
        return next((r for r in self._repositories.values() if str(r.id) == number), None)

    def _list(self, repository: _Repository, number: int, query: dict[str, list[str]], base: str) -> Answer:
        per_page = min(max(_integer(query, "per_page", 30), 1), 100)
        page = max(_integer(query, "page", 1), 1)
        comments = self._thread_of(repository, number)
        last = max((len(comments) + per_page - 1) // per_page, 1)
        shown = comments[(page - 1) * per_page:page * per_page]
        answer = Answer(200, [self._json(c, base) for c in shown])
        link = _link(f"{base}/repositories/{repository.id}/issues/{number}/comments", per_page, page, last)
        if link:
            answer.headers["Link"] = link
        return answer

    def _create(self, repository: _Repository, number: int, body: Any, base: str) -> Answer:
        invalid = self._invalid(body)
        if invalid is not None:
            return invalid
        comment = self._store(repository, number, body["body"], ACTIONS_BOT, "Bot")
        url = f"{base}/repos/{repository.name}/issues/comments/{comment.id}"
        return Answer(201, self._json(comment, base), {"Location": url})

    def _update(self, comment: _Comment, body: Any, base: str) -> Answer:
        invalid = self._invalid(body)
        if invalid is not None:
            return invalid
        comment.body, comment.updated = body["body"], comment.updated + timedelta(minutes=1)
        return Answer(200, self._json(comment, base))

    def _invalid(self, body: Any) -> Answer | None:
        """GitHub's 422 for a missing or too long body."""
        if not isinstance(body, dict) or not isinstance(body.get("body"), str):
            return _error(422, 'Invalid request.\n\n"body" wasn\'t supplied.')
        if len(body["body"]) > self.max_body:
            return _error(422, "Validation Failed", errors=[
                {"resource": "IssueComment", "code": "custom", "field": "body",
                 "message": f"body is too long (maximum is {self.max_body} characters)"}])
        return None

    def _store(self, repository: _Repository, number: int, body: str, login: str, user_type: str) -> _Comment:
        comment_id = next(self._ids)
        created = EPOCH + timedelta(seconds=len(self._comments))
        self._comments[comment_id] = _Comment(comment_id, repository, number, body, login, user_type, created,
                                              created)
        return self._comments[comment_id]

    def _thread_of(self, repository: _Repository, number: int) -> list[_Comment]:
        found = [c for c in self._comments.values() if c.repository == repository and c.number == number]
        return sorted(found, key=lambda c: c.id)

    def _json(self, comment: _Comment, base: str) -> dict[str, Any]:
        name = comment.repository.name
        web = base[:-len(self.prefix)] if self.prefix else base  # NOTE: the web pages are not under /api/v3
        return {"id": comment.id, "node_id": f"IC_{comment.id}",
                "url": f"{base}/repos/{name}/issues/comments/{comment.id}",
                "html_url": f"{web}/{name}/pull/{comment.number}#issuecomment-{comment.id}",
                "issue_url": f"{base}/repos/{name}/issues/{comment.number}", "body": comment.body,
                "user": {"login": comment.login, "type": comment.user_type},
                "created_at": _iso(comment.created), "updated_at": _iso(comment.updated),
                "author_association": "NONE"}


def _error(status: int, message: str, errors: list[dict[str, str]] | None = None) -> Answer:
    body: dict[str, Any] = {"message": message, "documentation_url": DOCS, "status": str(status)}
    if errors is not None:
        body["errors"] = errors
    return Answer(status, body)


def _integer(query: dict[str, list[str]], name: str, default: int) -> int:
    value = query.get(name, [""])[0]
    return int(value) if value.isdigit() else default


def _link(url: str, per_page: int, page: int, last: int) -> str:
    """GitHub's Link header: prev and next around this page, then last and first."""
    rels = []
    if page > 1:
        rels.append(("prev", min(page - 1, last)))
    if page < last:
        rels += [("next", page + 1), ("last", last)]
    if page > 1:
        rels.append(("first", 1))
    return ", ".join(f'<{url}?per_page={per_page}&page={p}>; rel="{rel}"' for rel, p in rels)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: GitHubStandIn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # NOTE: keep-alive, as requests' session uses it
    # NOTE: the headers and the body go in two writes; with Nagle's algorithm the body waits for a delayed ACK (40 ms)
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PATCH(self) -> None:
        self._answer("PATCH")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = self.server.standin.handle(method, self.path, headers, raw)
        if answer.body is None:
            data = b""
        else:
            data = (answer.body if isinstance(answer.body, str) else json.dumps(answer.body)).encode()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if answer.cut:
            # NOTE: fewer bytes than Content-Length, then the connection closes: requests' ChunkedEncodingError
            self.wfile.write(data[:len(data) // 2])
            self.close_connection = True
            return
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # NOTE: the signature is BaseHTTPRequestHandler's
        pass  # quiet: the tests read `requests` instead
