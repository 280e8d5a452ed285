"""Bytes from the parent that are no valid frame: every runner reports them, answers what it can, and serves on.

The bytes are written straight to a worker's input (the runner started as
the pool starts it, with a small frame limit), one line per case, and then
an ``invoke`` that must still succeed. In every language each bad line is
reported on stderr exactly once, in one short line (never the frame itself:
an oversized line is not echoed); a request whose id can be read gets an
error reply with the code the parent would give (INVALID_ARGUMENT,
NOT_FOUND, LIMIT_EXCEEDED); nothing else is answered, and nothing is run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .test_reader_failure import PLAIN, RawWorker

LIMIT = 4096

# (case, the line, the code of the error reply or None for no reply, words of the stderr report)
CASES: list[tuple[str, bytes, str | None, str]] = [
    ("not JSON", b"not json", None, "a frame that is not JSON"),
    ("not JSON, id readable", b'{"type":"rpc_request","id":11,"method":"invoke",', "INVALID_ARGUMENT", "not JSON"),
    (
        "not UTF-8, id readable",
        b'{"type":"rpc_request","id":12,"method":"invoke","args":{"data":"\xff","traceId":"t"}}',
        "INVALID_ARGUMENT",
        "a frame that is not UTF-8 text",
    ),
    ("not UTF-8", b"\xff\xfe{}", None, "not UTF-8 text"),
    (
        "over the limit",
        b'{"type":"rpc_request","id":13,"method":"invoke","args":{"data":"' + b"x" * (3 * LIMIT) + b'"}}',
        "LIMIT_EXCEEDED",
        "frame limit",
    ),
    ("a list", b"[1,2,3]", None, "not a JSON object"),
    ("a number", b"42", None, "not a JSON object"),
    ("a string", b'"invoke"', None, "not a JSON object"),
    ("null", b"null", None, "not a JSON object"),
    ("unknown type", b'{"type":"rpc_call","id":14,"method":"invoke"}', None, "neither rpc_request nor rpc_response"),
    ("no type", b'{"id":15,"method":"invoke"}', None, "neither rpc_request nor rpc_response"),
    ("unknown method", b'{"type":"rpc_request","id":16,"method":"nope"}', "NOT_FOUND", 'unknown method "nope"'),
    ("unknown notification", b'{"type":"rpc_request","method":"nope2"}', None, 'unknown method "nope2"'),
    ("reply to no request", b'{"type":"rpc_response","id":999,"result":1}', None, "a reply to no request (id 999)"),
    (
        "invoke without an id",
        b'{"type":"rpc_request","method":"invoke","args":{"data":null,"traceId":"t"}}',
        None,
        'a request for "invoke" without an id',
    ),
    ("config without an id", b'{"type":"rpc_request","method":"config"}', None, 'a request for "config" without an id'),
    ("method not a string", b'{"type":"rpc_request","id":17,"method":5}', "INVALID_ARGUMENT", "method"),
    ("args not an object", b'{"type":"rpc_request","id":18,"method":"invoke","args":5}', "INVALID_ARGUMENT", "args"),
    ("id not an id", b'{"type":"rpc_request","id":1.5,"method":"invoke"}', None, "neither a string nor an integer"),
]

INVOKE = b'{"type":"rpc_request","id":1,"method":"invoke","args":{"data":null,"traceId":"t"}}'


@pytest.mark.parametrize("lang", sorted(PLAIN))
def test_bad_frames_are_reported_answered_where_an_id_can_be_read_and_the_worker_serves_on(
    tmp_path: Path, lang: str
) -> None:
    raw = RawWorker(tmp_path, lang, env={"MOTIA_STEP_MAX_FRAME_BYTES": str(LIMIT)})
    try:
        raw.send(*(line for _, line, _, _ in CASES), INVOKE)
        replies: dict[Any, dict[str, Any]] = {}
        gets = 0
        while 1 not in replies:
            frame = raw.read(timeout=30)
            if frame.get("type") == "rpc_request" and frame.get("method") == "state.get":
                gets += 1
                raw.send(f'{{"type":"rpc_response","id":{frame["id"]},"result":5}}')
            elif frame.get("type") == "rpc_response":
                assert frame["id"] not in replies, frame  # one answer per request
                replies[frame["id"]] = frame
        assert replies.pop(1) == {"type": "rpc_response", "id": 1, "result": 5}
        code = raw.exit_code(timeout=30)
        stderr = raw.stderr()
    finally:
        raw.close()
    problems = [] if gets == 1 else [f"{gets - 1} frames that should have been refused ran the handler"]
    expected = {}
    for case, line, reply_code, _ in CASES:
        if reply_code is not None:
            rid = int(line.split(b'"id":')[1].split(b",")[0])
            expected[rid] = (case, reply_code)
    for rid, (case, reply_code) in expected.items():
        got = replies.pop(rid, None)
        if got is None or got.get("error", {}).get("code") != reply_code:
            problems.append(f"{case}: expected a {reply_code} reply to id {rid}, got {got}")
    problems += [f"an answer nobody asked for: {frame}" for frame in replies.values()]
    reports = [line for line in stderr.splitlines() if line.startswith("motia-state: ")]
    for case, _, _, words in CASES:
        if not any(words in report for report in reports):
            problems.append(f"{case}: no report saying {words!r} on stderr")
    if len(reports) != len(CASES):
        problems.append(f"{len(CASES)} bad frames, {len(reports)} reports")
    problems += [f"a report of {len(line)} characters" for line in stderr.splitlines() if len(line) > 1000]
    assert not problems, "\n".join(problems) + "\n--- stderr:\n" + stderr
    assert code == 0, stderr
