"""The sticky pull-request comment, over real HTTP against a stand-in for GitHub's REST API (github_standin.py)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from github_standin import ACTIONS_BOT, NOT_ACCESSIBLE, PRIMARY_LIMIT, SECONDARY_LIMIT, Answer, GitHubStandIn
from modelci import __version__
from modelci.report import comment
from modelci.report.comment import CommentError, Posted, target_from_env, upsert
from modelci.report.markdown import MARKER

TOKEN = "ghs_test-token"
REPO = "octo-org/widgets"
PR = 7
REPORT = f"{MARKER}\n# modelci report\n\n✅ **Passed**"
START = 1_700_000_000.0  # the fake clock's epoch seconds


class FakeClock:
    """`comment._now` and `comment._sleep`: a sleep records its wait and moves the clock on, at once."""

    def __init__(self) -> None:
        self.now = START
        self.waits: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(comment, "_now", fake.time)
    monkeypatch.setattr(comment, "_sleep", fake.sleep)
    return fake


@pytest.fixture
def github(clock: FakeClock) -> Iterator[GitHubStandIn]:
    """GitHub with one repository and its pull request #7; waits go to the fake clock."""
    with GitHubStandIn(token=TOKEN) as server:
        server.add_repository(REPO, pulls=(PR,))
        yield server


def post(server: GitHubStandIn, body: str = REPORT, **kwargs: object) -> Posted:
    options: dict[str, object] = {"api_url": server.url, "repository": REPO, "number": PR, "token": TOKEN}
    options.update(kwargs)
    return upsert(body, **options)  # type: ignore[arg-type]


def methods(server: GitHubStandIn) -> list[str]:
    return [r.method for r in server.requests]


def bot_comment(server: GitHubStandIn, body: str, login: str = ACTIONS_BOT) -> int:
    """A comment as the workflow's GITHUB_TOKEN (or a GitHub App, by its login) writes it."""
    return server.add_comment(REPO, PR, body, login=login, user_type="Bot")


# -- finding and writing the one comment ---------------------------------------------------------------


def test_creates_the_comment_when_there_is_none(github: GitHubStandIn) -> None:
    github.add_comment(REPO, PR, "LGTM")
    posted = post(github, "# modelci report")  # NOTE: no marker: upsert puts it first
    comments = github.comments_on(REPO, PR)
    assert posted.action == "created"
    assert [c["body"] for c in comments] == ["LGTM", f"{MARKER}\n# modelci report"]
    assert (posted.comment_id, posted.html_url) == (comments[1]["id"], comments[1]["html_url"])
    assert posted.html_url.endswith(f"/{REPO}/pull/{PR}#issuecomment-{posted.comment_id}")
    assert methods(github) == ["GET", "POST"]
    headers = github.requests[-1].headers
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["user-agent"] == f"modelci/{__version__}"


def test_follows_the_pages_and_updates_the_oldest_marked_comment(github: GitHubStandIn) -> None:
    for i in range(250):
        github.add_comment(REPO, PR, f"comment {i}")
        if i == 219:  # NOTE: on page 3; a newer marked comment after it must be left alone
            oldest = bot_comment(github, f"{MARKER}\nold report")
        if i == 240:
            bot_comment(github, f"{MARKER}\nduplicate from a past bug")
    posted = post(github)
    assert posted == Posted("updated", oldest, posted.html_url)
    assert next(c for c in github.comments_on(REPO, PR) if c["id"] == oldest)["body"] == REPORT
    assert methods(github) == ["GET", "GET", "GET", "PATCH"]
    gets = [r for r in github.requests if r.method == "GET"]
    assert gets[0].path == f"/repos/{REPO}/issues/{PR}/comments"
    assert gets[0].query == {"per_page": ["100"]}
    assert [r.query.get("page") for r in gets[1:]] == [["2"], ["3"]]
    assert all(r.path.startswith("/repositories/") for r in gets[1:])  # NOTE: GitHub's Link URLs, used as given
    assert github.writes()[0].path == f"/repos/{REPO}/issues/comments/{oldest}"


def test_an_identical_body_writes_nothing(github: GitHubStandIn) -> None:
    existing = bot_comment(github, REPORT)
    posted = post(github)
    assert (posted.action, posted.comment_id) == ("unchanged", existing)
    assert github.writes() == []


def test_a_second_run_updates_what_the_first_created(github: GitHubStandIn) -> None:
    first = post(github, f"{MARKER}\nrun 1")
    second = post(github, f"{MARKER}\nrun 2")
    third = post(github, f"{MARKER}\nrun 2")
    assert [p.action for p in (first, second, third)] == ["created", "updated", "unchanged"]
    assert first.comment_id == second.comment_id == third.comment_id
    assert [c["body"] for c in github.comments_on(REPO, PR)] == [f"{MARKER}\nrun 2"]
    assert [r.method for r in github.writes()] == ["POST", "PATCH"]


def test_works_under_the_enterprise_server_prefix(clock: FakeClock) -> None:
    with GitHubStandIn(token=TOKEN, prefix="/api/v3") as server:
        server.add_repository(REPO, pulls=(PR,))
        for i in range(150):
            if i == 120:
                server.add_comment(REPO, PR, f"{MARKER}\nold", login=ACTIONS_BOT, user_type="Bot")
            else:
                server.add_comment(REPO, PR, f"comment {i}")
        posted = post(server)
    assert server.url.endswith("/api/v3")
    assert posted.action == "updated"
    assert methods(server) == ["GET", "GET", "PATCH"]
    assert all(r.path.startswith("/api/v3/") for r in server.requests)
    assert "/api/v3" not in posted.html_url  # NOTE: the web page is not under the API's prefix


def test_a_next_page_on_another_host_is_refused(github: GitHubStandIn) -> None:
    github.fail_next(200, {"Link": '<http://elsewhere.invalid/comments?page=2>; rel="next"'}, [], method="GET")
    with pytest.raises(CommentError, match=r"elsewhere\.invalid.*does not send the token there"):
        post(github)
    assert methods(github) == ["GET"]


@pytest.mark.parametrize(("body", "login", "user_type"), [
    (f"{MARKER}\n# modelci report\n\ncopied by hand", "octocat", "User"),
    (f"Why did this fail?\n\n> {MARKER}\n> # modelci report", "octocat", "User"),
    (f"Another tool's summary, quoting modelci:\n\n{MARKER}\n# modelci report", "other-tool[bot]", "Bot"),
], ids=["person-starting-with-the-marker", "person-quoting-the-report", "bot-quoting-the-marker"])
def test_a_comment_that_is_not_modelcis_is_left_alone(github: GitHubStandIn, body: str, login: str,
                                                      user_type: str) -> None:
    theirs = github.add_comment(REPO, PR, body, login=login, user_type=user_type)
    posted = post(github)
    assert posted.action == "created"
    assert posted.comment_id != theirs
    assert [(c["id"], c["body"]) for c in github.comments_on(REPO, PR)] == [(theirs, body),
                                                                            (posted.comment_id, REPORT)]
    assert [r.method for r in github.writes()] == ["POST"]


def test_the_oldest_bot_comment_that_starts_with_the_marker_is_updated(github: GitHubStandIn) -> None:
    person = github.add_comment(REPO, PR, f"{MARKER}\nmy own copy")
    bot_comment(github, "Deployed to staging.")  # a bot's, without the marker
    oldest = bot_comment(github, f"\n  {MARKER}\nold report")  # NOTE: leading whitespace still counts
    newer = bot_comment(github, f"{MARKER}\nnewer report", login="modelci-app[bot]")  # a GitHub App's
    posted = post(github)
    assert (posted.action, posted.comment_id) == ("updated", oldest)
    bodies = {c["id"]: c["body"] for c in github.comments_on(REPO, PR)}
    assert bodies[oldest] == REPORT
    assert (bodies[person], bodies[newer]) == (f"{MARKER}\nmy own copy", f"{MARKER}\nnewer report")
    comments = github.comments_on(REPO, PR)
    assert next(c for c in comments if c["id"] == oldest)["user"] == {"login": ACTIONS_BOT, "type": "Bot"}


def test_the_stand_in_posts_as_the_actions_bot(github: GitHubStandIn) -> None:
    post(github)
    assert github.comments_on(REPO, PR)[0]["user"] == {"login": "github-actions[bot]", "type": "Bot"}


def test_a_body_with_the_marker_further_down_gets_it_first_and_is_found_again(github: GitHubStandIn) -> None:
    body = f"# modelci report\n\nquoting {MARKER} in the text"
    first, second = post(github, body), post(github, body)
    assert github.comments_on(REPO, PR)[0]["body"] == f"{MARKER}\n{body}"
    assert [p.action for p in (first, second)] == ["created", "unchanged"]
    assert len(github.comments_on(REPO, PR)) == 1


# -- pages that never end -------------------------------------------------------------------------------


@pytest.mark.parametrize("back_to", ["the-first-page", "itself"])
def test_a_next_page_already_read_is_refused(github: GitHubStandIn, back_to: str) -> None:
    first = f"{github.url}/repos/{REPO}/issues/{PR}/comments?per_page=100"
    second = f"{github.url}/repos/{REPO}/issues/{PR}/comments?per_page=100&page=2"
    github.fail_next(200, {"Link": f'<{second}>; rel="next"'}, [], method="GET")
    github.fail_next(200, {"Link": f'<{first if back_to == "the-first-page" else second}>; rel="next"'}, [],
                     method="GET")
    with pytest.raises(CommentError, match=r"is one already read: the pages go round in a circle.*GITHUB_API_URL"):
        post(github)
    assert methods(github) == ["GET", "GET"]


def test_the_pages_stop_at_a_hundred(github: GitHubStandIn) -> None:
    for page in range(2, 102):  # NOTE: every page says there is one more
        link = f"{github.url}/repositories/1/issues/{PR}/comments?per_page=100&page={page}"
        github.fail_next(200, {"Link": f'<{link}>; rel="next"'}, [], method="GET")
    with pytest.raises(CommentError, match=r"more than 100 pages of comments \(10,000 comments\)"):
        post(github)
    assert methods(github) == ["GET"] * 100


def test_no_request_starts_once_the_budget_is_spent(github: GitHubStandIn, clock: FakeClock,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    answer = github.handle

    def slowly(method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        clock.now += 50  # NOTE: every answer comes, but 50 s after its request
        return answer(method, target, headers, raw)

    monkeypatch.setattr(github, "handle", slowly)
    for i in range(250):
        github.add_comment(REPO, PR, f"comment {i}")
    with pytest.raises(CommentError, match=r"budget of 120 s ran out before POST .*Re-run the job later"):
        post(github)
    assert methods(github) == ["GET", "GET", "GET"]  # sent at 0, 50 and 100 s; at 150 s, no POST
    assert clock.waits == []


# -- rate limits, server errors and the budget ------------------------------------------------------


@pytest.mark.parametrize(("status", "headers", "body", "wait"), [
    (403, {"retry-after": "30"}, SECONDARY_LIMIT, 30.0),
    (429, {"retry-after": "5"}, SECONDARY_LIMIT, 5.0),
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(START) + 45)}, PRIMARY_LIMIT, 45.0),
    (429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(START) + 90)}, PRIMARY_LIMIT, 90.0),
    (403, {}, SECONDARY_LIMIT, 60.0),
    (429, {}, None, 60.0),
], ids=["403-retry-after", "429-retry-after", "403-ratelimit-reset", "429-ratelimit-reset",
        "403-secondary-without-headers", "429-without-headers"])
@pytest.mark.parametrize("refused", ["GET", "POST"])
def test_a_rate_limit_is_waited_out(github: GitHubStandIn, clock: FakeClock, status: int, headers: dict[str, str],
                                    body: object, wait: float, refused: str) -> None:
    github.fail_next(status, headers, body, method=refused)
    posted = post(github)
    assert posted.action == "created"
    assert clock.waits == [wait]
    assert methods(github).count(refused) == 2  # the refused request, sent again after the wait
    assert len(github.comments_on(REPO, PR)) == 1
    assert len(github.writes()) == (2 if refused == "POST" else 1)


def test_a_secondary_limit_waits_exponentially_longer(github: GitHubStandIn, clock: FakeClock) -> None:
    for _ in range(3):
        github.fail_next(403, {}, SECONDARY_LIMIT)
    assert post(github, budget_s=1000).action == "created"
    assert clock.waits == [60.0, 120.0, 240.0]


def test_retry_after_really_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comment, "_sleep", time.sleep)
    monkeypatch.setattr(comment, "_now", time.time)
    with GitHubStandIn(token=TOKEN) as server:
        server.add_repository(REPO, pulls=(PR,))
        server.fail_next(403, {"retry-after": "1"}, SECONDARY_LIMIT)
        began = time.monotonic()
        posted = post(server)
        took = time.monotonic() - began
    assert posted.action == "created"
    assert 0.95 <= took < 3.0


@pytest.mark.parametrize(("headers", "retry_at"), [
    ({"retry-after": "600"}, "2023-11-14 22:23:20 UTC"),
    ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(START) + 3600)}, "2023-11-14 23:13:20 UTC"),
], ids=["retry-after", "ratelimit-reset"])
def test_a_wait_past_the_budget_fails_without_waiting(github: GitHubStandIn, clock: FakeClock,
                                                      headers: dict[str, str], retry_at: str) -> None:
    github.fail_next(403, headers, PRIMARY_LIMIT)
    with pytest.raises(CommentError, match="budget of 120 s") as caught:
        post(github)
    assert f"Re-run the job after {retry_at}" in str(caught.value)
    assert clock.waits == []
    assert methods(github) == ["GET"]


def test_the_budget_counts_every_wait(github: GitHubStandIn, clock: FakeClock) -> None:
    github.fail_next(429, {"retry-after": "50"})
    github.fail_next(429, {"retry-after": "50"})
    github.fail_next(429, {"retry-after": "50"})
    with pytest.raises(CommentError, match=r"budget of 120 s \(20 s left\)"):
        post(github)
    assert clock.waits == [50.0, 50.0]
    assert github.writes() == []


def test_a_502_is_retried_with_backoff(github: GitHubStandIn, clock: FakeClock) -> None:
    github.fail_next(502, body="<html><body>502 Bad Gateway</body></html>")
    github.fail_next(503)
    assert post(github).action == "created"
    assert clock.waits == [1.0, 2.0]
    assert methods(github) == ["GET", "GET", "GET", "POST"]


def test_a_post_that_landed_but_answered_502_is_not_sent_twice(github: GitHubStandIn, clock: FakeClock) -> None:
    github.fail_next(502, method="POST", after_handling=True)
    posted = post(github)
    assert posted.action == "created"
    assert [c["body"] for c in github.comments_on(REPO, PR)] == [REPORT]
    assert methods(github) == ["GET", "POST", "GET"]  # looked again instead of posting again
    assert clock.waits == [1.0]


def test_a_server_that_keeps_failing_gives_up_after_the_retries(github: GitHubStandIn, clock: FakeClock) -> None:
    for _ in range(10):
        github.fail_next(500)
    with pytest.raises(CommentError, match=r"GitHub answered 500 .* still after 6 retries"):
        post(github)
    assert clock.waits == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0]


def test_a_lost_connection_is_retried_then_reported(clock: FakeClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # NOTE: closed again at once, so nothing listens there
    with pytest.raises(CommentError, match=r"cannot reach http://127\.0\.0\.1:\d+ \(ConnectionError\)"):
        upsert(REPORT, api_url=f"http://127.0.0.1:{port}", repository=REPO, number=PR, token=TOKEN)
    assert len(clock.waits) == 6
    assert clock.waits == sorted(clock.waits)


@pytest.mark.parametrize("refused", ["GET", "POST"])
def test_an_answer_cut_short_is_a_lost_connection(github: GitHubStandIn, clock: FakeClock, refused: str) -> None:
    github.cut_next(refused)
    posted = post(github)
    assert posted.action == "created"
    assert [c["body"] for c in github.comments_on(REPO, PR)] == [REPORT]
    # NOTE: a GET is sent again; the POST was carried out, so it is looked for instead of sent twice
    assert methods(github) == (["GET", "GET", "POST"] if refused == "GET" else ["GET", "POST", "GET"])
    assert clock.waits == [1.0]


# -- answers that are not GitHub's ----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "status", "written"), [("GET", 200, False), ("POST", 201, True),
                                                           ("PATCH", 200, True)])
def test_an_answer_that_is_not_json_is_a_comment_error(github: GitHubStandIn, method: str, status: int,
                                                       written: bool) -> None:
    if method == "PATCH":
        bot_comment(github, f"{MARKER}\nold report")
    github.fail_next(status, body="<html><body>\n  Sign in to the proxy\n</body></html>", method=method,
                     after_handling=True)
    with pytest.raises(CommentError) as caught:
        post(github)
    message = str(caught.value)
    assert f"the answer to {method} " in message
    assert f"({status}, text/html) is not JSON: '<html><body> Sign in to the proxy </body></html>'" in message
    assert "check GITHUB_API_URL and the runner's proxy settings" in message
    assert ("may or may not have been written" in message) is written


@pytest.mark.parametrize(("method", "answer"), [
    ("POST", {"html_url": "https://github.com/octo-org/widgets/pull/7#issuecomment-1"}),
    ("POST", {"id": 1}),
    ("POST", {"id": "1", "html_url": "https://github.com/octo-org/widgets/pull/7#issuecomment-1"}),
    ("POST", ["not", "a", "comment"]),
    ("PATCH", {}),
    ("GET", [{"body": REPORT, "user": {"login": ACTIONS_BOT, "type": "Bot"}}]),
], ids=["no-id", "no-html_url", "id-not-a-number", "not-an-object", "patch-empty", "listed-without-id"])
def test_a_comment_without_id_or_html_url_is_a_comment_error(github: GitHubStandIn, method: str,
                                                              answer: object) -> None:
    if method == "PATCH":
        bot_comment(github, f"{MARKER}\nold report")
    github.fail_next(201 if method == "POST" else 200, body=answer, method=method)
    with pytest.raises(CommentError, match=rf"the answer to {method} \S+ holds a comment without a numeric `id` and "
                                           r"an `html_url`; is http://\S+ GitHub's REST API\? Check GITHUB_API_URL"):
        post(github)


@pytest.mark.parametrize("api_url", ["api.github.com", "ftp://api.github.com", "https://", "https:///api/v3",
                                     "http://127.0.0.1:notaport", "http://[::1", "https://exa mple.com",
                                     "https://ex..com", "https://-github.com", "https://git_hub.com:0", "https://☃.com",
                                     f"https://{'a' * 64}.com"])
def test_an_api_url_that_is_no_http_url_is_a_comment_error(clock: FakeClock, api_url: str) -> None:
    with pytest.raises(CommentError, match=r"is not an http\(s\) URL with a host; nothing was sent.*api/v3"):
        upsert(REPORT, api_url=api_url, repository=REPO, number=PR, token=TOKEN)


def test_a_redirect_loop_is_a_comment_error(github: GitHubStandIn, clock: FakeClock) -> None:
    for _ in range(requests.Session().max_redirects + 1):
        github.fail_next(302, {"Location": f"{github.url}/login"}, method="GET")
    with pytest.raises(CommentError, match=r"redirected more than 30 times \(TooManyRedirects\).*GITHUB_API_URL"):
        post(github)
    assert clock.waits == []


def test_a_tls_failure_is_not_retried(github: GitHubStandIn, clock: FakeClock) -> None:
    with pytest.raises(CommentError, match=r"TLS connection to https://127\.0\.0\.1:\d+ failed .*REQUESTS_CA_BUNDLE"):
        post(github, api_url=github.url.replace("http://", "https://"))  # NOTE: the stand-in speaks plain HTTP
    assert clock.waits == []


# -- the token stays secret ------------------------------------------------------------------------------


@pytest.mark.parametrize(("token", "problem"), [
    (f"{TOKEN}\n", "a line break"), (f" {TOKEN}", "a space"), (f"{TOKEN}€", "not ASCII"), ("", "the token is empty"),
], ids=["trailing-newline", "leading-space", "not-latin-1", "empty"])
def test_a_malformed_token_is_refused_without_quoting_it(github: GitHubStandIn, token: str, problem: str) -> None:
    with pytest.raises(CommentError, match="nothing was sent") as caught:
        post(github, token=token)
    assert problem in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert github.requests == []


def test_a_server_that_echoes_the_token_does_not_get_it_into_the_message(github: GitHubStandIn) -> None:
    github.fail_next(418, {}, {"message": f"I'm a teapot; you sent Bearer {TOKEN}"})
    with pytest.raises(CommentError, match=r"GitHub answered 418 .*you sent Bearer \*\*\*") as caught:
        post(github)
    assert TOKEN not in str(caught.value)


# -- refusals ------------------------------------------------------------------------------------------


def test_an_oversized_body_is_refused_before_sending(github: GitHubStandIn) -> None:
    with pytest.raises(CommentError) as caught:
        post(github, "é" * (65_536 - len(MARKER)))  # NOTE: characters, not bytes; the marker and its newline add
    # NOTE: the caller cuts the report to fit, so the message claims nothing about where a whole report is
    assert str(caught.value) == "the comment is 65,537 characters, over GitHub's limit of 65,536; nothing was sent."
    assert github.requests == []


def test_a_body_of_exactly_the_limit_is_sent(github: GitHubStandIn) -> None:
    body = f"{MARKER}\n" + "é" * (65_536 - len(MARKER) - 1)
    assert post(github, body).action == "created"
    assert github.comments_on(REPO, PR)[0]["body"] == body


def test_a_422_from_github_quotes_its_errors(clock: FakeClock) -> None:
    with GitHubStandIn(token=TOKEN, max_body=100) as server:  # NOTE: a lower limit makes the stand-in refuse it
        server.add_repository(REPO, pulls=(PR,))
        with pytest.raises(CommentError, match=r"422: Validation Failed: body is too long \(maximum is 100"):
            post(server, "x" * 200)
    assert [r.method for r in server.writes()] == ["POST"]


def test_a_wrong_token_names_the_permission(github: GitHubStandIn) -> None:
    with pytest.raises(CommentError, match="401: Bad credentials") as caught:
        post(github, token="not-the-token")
    assert "`pull-requests: write`" in str(caught.value)
    assert methods(github) == ["GET"]


def test_a_read_only_token_names_the_permission_and_forks(github: GitHubStandIn, clock: FakeClock) -> None:
    github.fail_next(403, {}, NOT_ACCESSIBLE, method="POST")
    with pytest.raises(CommentError, match="403: Resource not accessible by integration") as caught:
        post(github)
    message = str(caught.value)
    assert "`pull-requests: write`" in message
    assert "fork" in message
    assert "`workflow_run`" in message
    assert clock.waits == []  # NOTE: not a rate limit: no wait, no second try
    assert github.comments_on(REPO, PR) == []


@pytest.mark.parametrize(("repository", "number"), [("octo-org/nothing", PR), (REPO, 999)],
                         ids=["repository", "pull-request"])
def test_what_does_not_exist_is_a_404(github: GitHubStandIn, repository: str, number: int) -> None:
    with pytest.raises(CommentError, match=r"404 .* does not exist, or the token cannot see it"):
        post(github, repository=repository, number=number)
    assert github.writes() == []


# -- the pull request of this run --------------------------------------------------------------------


def event_file(tmp_path: Path, payload: object) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("payload", "ref", "expected"), [
    ({"pull_request": {"number": 42}}, "refs/pull/42/merge", 42),
    ({"issue": {"number": 43, "pull_request": {"url": "…"}}}, "refs/heads/main", 43),
    ({"issue": {"number": 44}}, "refs/heads/main", None),  # a plain issue, not a pull request
    ({"ref": "refs/heads/main"}, "refs/pull/45/merge", 45),
    ({"ref": "refs/heads/main"}, "refs/heads/main", None),
    (None, "refs/pull/46/merge", 46),  # no event file at all
], ids=["pull_request", "issue_comment-on-pr", "issue_comment-on-issue", "ref-fallback", "push", "no-event-file"])
def test_target_from_env(tmp_path: Path, payload: object, ref: str, expected: int | None) -> None:
    event = str(tmp_path / "missing.json") if payload is None else event_file(tmp_path, payload)
    environ = {"GITHUB_REPOSITORY": REPO, "GITHUB_REF": ref, "GITHUB_EVENT_PATH": event}
    found = target_from_env(environ)
    assert found == (None if expected is None else ("https://api.github.com", REPO, expected))


def test_target_from_env_uses_the_enterprise_api_url(tmp_path: Path) -> None:
    environ = {"GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": "https://ghe.example.com/api/v3/",
               "GITHUB_EVENT_PATH": event_file(tmp_path, {"pull_request": {"number": 5}})}
    assert target_from_env(environ) == ("https://ghe.example.com/api/v3", REPO, 5)


def test_target_from_env_needs_the_repository() -> None:
    assert target_from_env({"GITHUB_REF": "refs/pull/5/merge"}) is None
