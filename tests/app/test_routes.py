"""API routes matched and answered as Motia's (Express's default router) are: slashes, methods, body types."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import httpx
import pytest

import motia_state as ms
from motia_state.app import App, ConfigError
from motia_state.app.http import response_for

from ..helpers import require_tool
from .test_app import write

ROUTES = {
    "files.step.py": """
        config = {"name": "Files", "triggers": [
            {"type": "api", "method": "GET", "path": "/files/:name"},
            {"type": "api", "method": "GET", "path": "/dirs/:name/"},
        ]}

        def handler(req, ctx):
            return {"params": req["pathParams"], "path": req["path"]}
    """,
    "me.step.py": """
        config = {"name": "Me", "triggers": [{"type": "api", "method": "GET", "path": "/users/me"}]}

        def handler(req, ctx):
            return {"me": True}
    """,
    # A name that sorts first, on a parameter route that also takes /users/me.
    "a_user.step.py": """
        config = {"name": "AUser", "triggers": [
            {"type": "api", "method": "GET", "path": "/users/:id"},
            {"type": "api", "method": "DELETE", "path": "/users/:id"},
        ]}

        def handler(req, ctx):
            return {"id": req["pathParams"]["id"], "method": req["method"]}
    """,
    "echo.step.py": """
        config = {"name": "Echo", "triggers": [
            {"type": "api", "method": "POST", "path": "/echo"},
            {"type": "api", "method": "PUT", "path": "/echo"},
        ]}

        def handler(req, ctx):
            return {"body": req["body"]}
    """,
    "list.step.py": """
        config = {"name": "List", "triggers": [{"type": "api", "method": "GET", "path": "/echo"}]}

        def handler(req, ctx):
            return []
    """,
}


def client_for(app: App) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app.asgi), base_url="http://app")


async def test_a_trailing_slash_is_optional_on_every_route_and_request(tmp_path: Path) -> None:
    root = write(tmp_path, ROUTES)
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app, client_for(app) as client:
        for url, params in [
            ("/files/x", {"name": "x"}),
            ("/files/x/", {"name": "x"}),
            ("/files/a%2Fb", {"name": "a/b"}),
            ("/files/a%2Fb/", {"name": "a/b"}),
            ("/files/a%2F/", {"name": "a/"}),  # the encoded slash stays in the parameter
            ("/dirs/y", {"name": "y"}),
            ("/dirs/y/", {"name": "y"}),
        ]:
            r = await client.get(url)
            assert r.status_code == 200, (url, r.status_code, r.text)  # answered, not redirected
            assert r.json()["params"] == params, url
        assert (await client.post("/echo/", json={"a": 1})).json() == {"body": {"a": 1}}
        for url in ("/files/", "/files//", "/files/a/b"):
            assert (await client.get(url)).status_code == 404, url


async def test_a_fixed_segment_wins_over_a_parameter_whatever_the_file_order(tmp_path: Path) -> None:
    root = write(tmp_path, ROUTES)
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app, client_for(app) as client:
        assert (await client.get("/users/me")).json() == {"me": True}
        assert (await client.get("/users/7")).json() == {"id": "7", "method": "GET"}
        assert (await client.delete("/users/me")).json() == {"id": "me", "method": "DELETE"}


async def test_405_names_every_method_served_at_the_path_and_options_answers_204(tmp_path: Path) -> None:
    root = write(tmp_path, ROUTES)
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app, client_for(app) as client:
        for path in ("/echo", "/echo/"):
            r = await client.delete(path)
            assert r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED"
            assert r.headers["allow"] == "GET, HEAD, POST, PUT", path
            r = await client.options(path)
            assert r.status_code == 204 and r.headers["allow"] == "GET, HEAD, POST, PUT", path
        r = await client.post("/users/me")
        assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, HEAD"
        assert (await client.options("/nowhere")).status_code == 404


async def test_two_routes_that_differ_by_a_trailing_slash_are_a_config_error(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "a.step.py": "config = {'name': 'A', 'triggers': [{'type': 'api', 'method': 'GET', 'path': '/x/:id'}]}\n",
            "b.step.py": "config = {'name': 'B', 'triggers': [{'type': 'api', 'method': 'GET', 'path': '/x/:k/'}]}\n",
        },
    )
    with pytest.raises(ConfigError, match=r"b\.step\.py: config\.triggers\[0\]: GET /x/:k/ is already served by"):
        async with App.from_directory(root, state=ms.MemoryStateAdapter()):
            pass


@pytest.mark.parametrize(
    ("content_type", "sent", "body"),
    [
        (
            "application/x-www-form-urlencoded",
            b"a=1&b=%C3%A9&a=3&sp=x+y&e=",
            {"a": ["1", "3"], "b": "é", "sp": "x y", "e": ""},
        ),
        ("application/x-www-form-urlencoded; charset=latin-1", b"b=%E9", {"b": "é"}),
        # curl -d '{...}' without a Content-Type labels JSON a form: it is read as the JSON it is.
        ("application/x-www-form-urlencoded", b' {"a": [1]}', {"a": [1]}),
        ("application/x-www-form-urlencoded", b"[1, 2]", [1, 2]),
        ("application/x-www-form-urlencoded", b"{a=1", {"{a": "1"}),  # not JSON: a form after all
        ("text/plain;charset=UTF-8", b'{"a": 1}', {"a": 1}),  # a browser's fetch of JSON.stringify(...)
        ("text/plain", b"{not json", "{not json"),
        ("text/csv", b"[1, 2]", "[1, 2]"),  # only text/plain: another text type is its own text
        ("text/csv; charset=latin-1", "é,1".encode("latin-1"), "é,1"),
        ("application/json", b'{"a": [1]}', {"a": [1]}),
        ("application/vnd.api+json", b"[1]", [1]),
        (None, b'{"a": 1}', {"a": 1}),
        ("text/plain", b"", None),
    ],
)
async def test_a_body_is_read_by_its_content_type(
    tmp_path: Path, content_type: str | None, sent: bytes, body: object
) -> None:
    root = write(tmp_path, ROUTES)
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app, client_for(app) as client:
        headers = {"content-type": content_type} if content_type else {}
        r = await client.post("/echo", content=sent, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"body": body}


@pytest.mark.parametrize(
    ("content_type", "sent", "says"),
    [
        ("application/json", b"{oops", "the request body is not JSON"),
        ("application/octet-stream", b"\x00\xff", "(Content-Type: application/octet-stream) is not JSON"),
        ("text/plain", b"\xe9", "text body is not utf-8 text"),
        ("application/x-www-form-urlencoded", b"a=%E9", "form body is not utf-8 text"),
        ("text/plain; charset=nope", b"x", "unknown encoding"),
    ],
)
async def test_a_body_that_does_not_read_as_its_type_is_a_clear_400(
    tmp_path: Path, content_type: str, sent: bytes, says: str
) -> None:
    root = write(tmp_path, ROUTES)
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app, client_for(app) as client:
        r = await client.post("/echo", content=sent, headers={"content-type": content_type})
        assert r.status_code == 400 and r.json()["code"] == "INVALID_ARGUMENT", r.text
        assert says in r.json()["error"]


def test_a_string_body_with_a_content_type_that_is_not_json_is_sent_as_it_is() -> None:
    r = response_for({"status": 200, "headers": {"Content-Type": "text/html"}, "body": "<h1>é</h1>"})
    assert r.body == "<h1>é</h1>".encode() and r.headers["content-type"] == "text/html"
    r = response_for({"status": 200, "headers": {"content-type": "text/csv; charset=latin-1"}, "body": "é"})
    assert r.body == b"\xe9" and r.headers.getlist("content-type") == ["text/csv; charset=latin-1"]
    # JSON stays JSON: a string body without a type, or with a JSON one, is a JSON string.
    assert response_for({"status": 200, "body": "plain"}).body == b'"plain"'
    r = response_for({"status": 200, "headers": {"content-type": "application/json"}, "body": "plain"})
    assert r.body == b'"plain"' and r.headers.getlist("content-type") == ["application/json"]
    r = response_for({"status": 200, "headers": {"content-type": "text/plain; charset=ascii"}, "body": "é"})
    assert r.status_code == 500 and "cannot be sent as ascii" in json.loads(bytes(r.body))["error"]


def test_a_header_given_as_a_list_is_sent_as_one_line_per_value() -> None:
    r = response_for({"status": 200, "headers": {"Set-Cookie": ["a=1", "b=2"], "X-One": 1}, "body": {}})
    assert r.headers.getlist("set-cookie") == ["a=1", "b=2"] and r.headers["x-one"] == "1"
    r = response_for({"status": 200, "headers": {"Set-Cookie": ["a=1", {"b": 2}]}})
    assert r.status_code == 500 and "lists of strings" in json.loads(bytes(r.body))["error"]


PAGE = "http://localhost:5173"


async def test_without_cors_a_page_of_another_origin_is_refused_with_a_warning_that_says_how(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write(tmp_path, ROUTES)
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app, client_for(app) as client:
        preflight = {"origin": PAGE, "access-control-request-method": "PUT", "access-control-request-headers": "x-a"}
        r = await client.options("/echo", headers=preflight)
        assert r.status_code == 204 and "access-control-allow-origin" not in r.headers
        r = await client.post("/echo", json=[1], headers={"origin": PAGE})
        assert r.json() == {"body": [1]} and "access-control-allow-origin" not in r.headers
        assert r.headers["vary"] == "Origin"
        # The server's own origin is no concern of CORS, and is not warned about.
        await client.post("/echo", json=[1], headers={"origin": "http://app"})
    warnings = [rec.getMessage() for rec in caplog.records if "CORS" in rec.getMessage()]
    assert len(warnings) == 1, warnings  # once per origin
    assert f"a page at {PAGE} called PUT /echo" in warnings[0] and f"--cors {PAGE}" in warnings[0]


async def test_cors_lets_the_pages_of_the_origins_given_call_the_routes(tmp_path: Path) -> None:
    root = write(tmp_path, ROUTES)
    async with (
        App.from_directory(root, state=ms.MemoryStateAdapter(), cors=[PAGE + "/"]) as app,
        client_for(app) as client,
    ):
        preflight = {"origin": PAGE, "access-control-request-method": "PUT", "access-control-request-headers": "x-a"}
        r = await client.options("/echo/", headers=preflight)
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == PAGE
        assert r.headers["access-control-allow-methods"] == "GET, HEAD, POST, PUT"
        assert r.headers["access-control-allow-headers"] == "x-a" and r.headers["vary"] == "Origin"
        r = await client.put("/echo", json={"a": 1}, headers={"origin": PAGE})
        assert r.json() == {"body": {"a": 1}} and r.headers["access-control-allow-origin"] == PAGE
        assert r.headers["access-control-expose-headers"] == "*"
        r = await client.put("/echo", json={"a": 1}, headers={"origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        # The workbench is never opened to other origins.
        r = await client.get("/__motia/state", headers={"origin": PAGE, "host": "127.0.0.1"})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    async with App.from_directory(root, state=ms.MemoryStateAdapter(), cors=["*"]) as app, client_for(app) as client:
        r = await client.get("/users/7", headers={"origin": "http://anywhere.example"})
        assert r.headers["access-control-allow-origin"] == "*" and "vary" not in r.headers


async def test_a_header_sent_several_times_reaches_the_handler_whole(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "h.step.py": """
                config = {"name": "H", "triggers": [{"type": "api", "method": "GET", "path": "/h"}]}

                def handler(req, ctx):
                    return req["headers"]
            """
        },
    )
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app, client_for(app) as client:
        sent = [("X-Tag", "a"), ("x-tag", "b"), ("Cookie", "s=1"), ("cookie", "t=2"), ("X-One", "1")]
        headers = (await client.get("/h", headers=sent)).json()
        assert headers["x-tag"] == "a, b" and headers["cookie"] == "s=1; t=2" and headers["x-one"] == "1"


async def test_the_raw_body_reaches_the_handler_for_a_signature_check(tmp_path: Path) -> None:
    # Motia's req.rawBody: a webhook's signature is over the bytes sent, not over the parsed JSON.
    root = write(
        tmp_path,
        {
            "hook.step.js": """
                const crypto = require('crypto')
                exports.config = { name: 'Hook', triggers: [{ type: 'api', method: 'POST', path: '/hook' }] }
                exports.handler = async (req) => {
                  const mac = crypto.createHmac('sha256', 'k').update(req.rawBody).digest('hex')
                  return { ok: mac === req.headers['x-signature'], raw: req.rawBody, amount: req.body.amount }
                }
            """
        },
    )
    require_tool("node")
    sent = b'{"amount":  7, "note": "caf\\u00e9 \xe2\x82\xac"}'
    signature = hmac.new(b"k", sent, hashlib.sha256).hexdigest()
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app, client_for(app) as client:
        r = await client.post(
            "/hook", content=sent, headers={"content-type": "application/json", "x-signature": signature}
        )
        assert r.json() == {"ok": True, "raw": sent.decode(), "amount": 7}


async def test_the_raw_body_is_left_out_when_it_would_not_fit_beside_the_body(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "raw.step.py": """
                config = {"name": "Raw", "triggers": [{"type": "api", "method": "POST", "path": "/raw"}]}

                def handler(req, ctx):
                    return {"raw": "rawBody" in req, "size": len(req["body"])}
            """
        },
    )
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app, client_for(app) as client:
        assert app.pool is not None
        limit = app.pool.max_frame_bytes
        r = await client.post("/raw", content=json.dumps("x" * 10), headers={"content-type": "application/json"})
        assert r.json() == {"raw": True, "size": 10}
        # Over a quarter of the frame limit: never twice.
        big = json.dumps("x" * (limit // 4)).encode()
        r = await client.post("/raw", content=big, headers={"content-type": "application/json"})
        assert r.json() == {"raw": False, "size": limit // 4}
        # Under it, but six bytes per character once escaped, twice: it would not fit, so it is left out.
        controls = b"\x01" * (limit // 8)
        r = await client.post("/raw", content=controls, headers={"content-type": "text/csv"})
        assert r.status_code == 200 and r.json() == {"raw": False, "size": limit // 8}, r.text[:200]


async def test_a_charset_whose_codec_raises_unicode_error_is_answered_not_raised() -> None:
    # The idna codec refuses a long label and the 'replace' handler with UnicodeError, which is
    # neither UnicodeEncodeError nor UnicodeDecodeError.
    r = response_for({"status": 200, "headers": {"content-type": "text/plain; charset=idna"}, "body": "x" * 100})
    assert r.status_code == 500 and "cannot be sent as idna" in json.loads(bytes(r.body))["error"]

    from starlette.requests import Request

    from motia_state.app.http import request_input

    sent = b'{"a": 1}'

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": sent, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "raw_path": b"/x",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json; charset=idna")],
    }
    data = await request_input(Request(scope, receive))
    assert data["body"] == {"a": 1} and data["rawBody"] == '{"a": 1}'
