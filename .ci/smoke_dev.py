"""CI smoke test of the README's main job: `bash scripts/dev` serves the
example app; an API call works, the workbench answers, SIGTERM exits 0."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

proc = subprocess.Popen(
    ["bash", "scripts/dev", "--port", "0"],
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
)
assert proc.stdout is not None
url = None
deadline = time.monotonic() + 120
lines = []
while time.monotonic() < deadline:
    line = proc.stdout.readline()
    if not line:
        break
    lines.append(line)
    sys.stdout.write(line)
    m = re.search(r"workbench: (http://\S+)/__motia", line)
    if m:
        url = m.group(1)
        break
if url is None:
    proc.kill()
    sys.exit("scripts/dev printed no workbench URL:\n" + "".join(lines))

request = urllib.request.Request(
    url + "/basic-tutorial",
    data=json.dumps({"pet": {"name": "Jack", "photoUrl": "https://example.com/jack.png"}}).encode(),
    headers={"Content-Type": "application/json"},
    method="POST",
)
with urllib.request.urlopen(request, timeout=30) as answer:
    body = json.loads(answer.read())
    print("POST /basic-tutorial ->", answer.status, body)
    assert answer.status == 200, answer.status
with urllib.request.urlopen(url + "/__motia", timeout=30) as answer:
    print("GET /__motia ->", answer.status)
    assert answer.status == 200, answer.status

proc.send_signal(signal.SIGTERM)
try:
    out, _ = proc.communicate(timeout=30)
except subprocess.TimeoutExpired:
    proc.kill()
    sys.exit("scripts/dev did not stop within 30 s of SIGTERM")
sys.stdout.write(out)
if proc.returncode != 0:
    sys.exit(f"scripts/dev exited {proc.returncode} after SIGTERM (expected 0)")
print("smoke test of scripts/dev: ok")
