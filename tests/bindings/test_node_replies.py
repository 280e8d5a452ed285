"""The Node client settles every reply the parent encodes exactly as JSON.parse reads it.

The client reads a reply's id and an integer result from its text without
JSON.parse; the parent encodes small replies of one read together. Both
must agree with the plain reading for every shape the parent sends, fed in
one piece and cut into small reads.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

from motia_state.rpc.frames import Reply, append_response, encode_replies

from ..helpers import require_tool

NODE_LIB = Path(__file__).resolve().parents[2] / "bindings" / "node"

# For each piece size: settle one request per reply line, then compare each
# value with JSON.parse of its line (Object.is for numbers: -0 stays -0).
SCRIPT = r"""
const { PassThrough } = require('node:stream')
const { RpcClient } = require(process.argv[1])
const text = require('node:fs').readFileSync(0, 'utf8')
const lines = text.split('\n').filter(Boolean)
const bad = []
async function run (piece) {
  const input = new PassThrough()
  const client = new RpcClient(input, { write () {} }, {})
  const calls = lines.map(() => client.request('state.get', { traceId: 't', key: 'k' }))
  await new Promise((resolve) => setImmediate(resolve))
  const bytes = Buffer.from(text)
  for (let i = 0; i < bytes.length; i += piece) input.write(bytes.subarray(i, i + piece))
  const got = await Promise.all(calls)
  lines.forEach((line, i) => {
    const want = JSON.parse(line).result
    const same = typeof want === 'number' ? Object.is(want, got[i]) : JSON.stringify(want) === JSON.stringify(got[i])
    if (!same) bad.push([piece, line, String(got[i])])
  })
}
(async () => {
  for (const piece of [1 << 20, 1, 7, 37]) await run(piece)
  process.stdout.write(JSON.stringify(bad))
})()
"""


def _results() -> list[Any]:
    rng = random.Random(7)
    values: list[Any] = [
        0,
        -0.0,
        0.0,
        -1,
        1,
        2**53,
        2**53 + 1,
        -(2**53) - 1,
        10**15 - 1,
        -(10**15) + 1,
        10**15,
        10**16 - 1,
        2**63,
        10**30,
        1e21,
        1e-7,
        1.5,
        -2.5e300,
        5e-324,
        float("nan"),
        '"id":5,"result":1}',
        "}",
        "a\u2028b\nc",
        "é😀",
        {"id": 3, "result": 4},
        [1, [2, {"x": None}]],
        True,
        False,
        None,
        "",
    ]
    # Integers of every length from 1 to 20 digits, both signs.
    for digits in range(1, 21):
        values += [rng.randint(-(10**digits), 10**digits) for _ in range(30)]
    values += [rng.uniform(-1e20, 1e20) for _ in range(50)]
    return values


def test_node_settles_every_reply_shape_as_json_parse_does() -> None:
    node = require_tool("node")
    values = _results()
    # Half the replies encoded one by one, half in one run, as the peer does.
    body = bytearray()
    for i, value in enumerate(values[::2]):
        append_response(body, 2 * i + 1, value)
    run = encode_replies([Reply(2 * i + 2, v) for i, v in enumerate(values[1::2])])
    lines = sorted(
        bytes(body).splitlines() + run.splitlines(),
        key=lambda line: json.loads(line)["id"],
    )
    text = b"\n".join(lines) + b"\n"
    proc = subprocess.run(
        [node, "-e", SCRIPT, str(NODE_LIB)], input=text, capture_output=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert json.loads(proc.stdout) == []
