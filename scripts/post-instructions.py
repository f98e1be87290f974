#!/usr/bin/env python3
"""Instructions the server executes per post, counted by callgrind.

usage: scripts/post-instructions.py [--answer] [BINARY] [N]

Starts BINARY (default target/release/smolchat) under
`valgrind --tool=callgrind` with `--db :memory: --rate 0 --threads 1`,
posts N messages (default 200) over one keep-alive connection, stops it,
and does the same with N + 1,000 posts; the difference of the two totals
over 1,000 is the cost of one post, without start-up and shutdown. The
count does not depend on the machine's speed, which makes it the figure to
compare two builds by (docs/performance.md). Needs valgrind.

On a busy machine the whole program's count moves by a few percent from
run to run: how often the executor and the reactor wake up depends on
timing. `--answer` counts only inside the connection's answer to a request
(head check, request, route, post handler, transforms, response), which
moves by 1-2 %.
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile


ONLY = []


def total(binary, posts):
    out = tempfile.NamedTemporaryFile(prefix="callgrind.", delete=False).name
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *ONLY, binary,
         "--addr", "127.0.0.1:0", "--db", ":memory:", "--rate", "0", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = None
        for line in server.stdout:
            m = re.search(r"127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            sys.exit(f"{binary} did not print its address")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        body = json.dumps({"user": "ana", "text": "hello :) this is `code` and a plain sentence"})
        for _ in range(posts):
            conn.request("POST", "/rooms/kitchen/messages", body,
                         {"Content-Type": "application/json"})
            res = conn.getresponse()
            res.read()
            if res.status != 201:
                sys.exit(f"a post got {res.status}")
        conn.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
    count = 0
    with open(out) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                count = int(line.split()[1])
    os.remove(out)
    return count


def main():
    args = sys.argv[1:]
    what = "instructions per post"
    if args[:1] == ["--answer"]:
        args = args[1:]
        ONLY.append("--toggle-collect=smolchat::http::conn::Conn::answer::*")
        what = "instructions per post in answering it"
    binary = args[0] if args else "target/release/smolchat"
    n = int(args[1]) if len(args) > 1 else 200
    a = total(binary, n)
    b = total(binary, n + 1000)
    print(f"{binary}: {(b - a) / 1000:,.0f} {what} "
          f"({a:,} for {n} posts, {b:,} for {n + 1000})")


if __name__ == "__main__":
    main()
