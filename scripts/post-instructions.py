#!/usr/bin/env python3
"""Instructions the server executes per post, counted by callgrind.

usage: scripts/post-instructions.py [--answer] [--plain] [BINARY] [N]

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

`--plain` posts what `loadgen post` (and so `scripts/bench.sh --compare`)
posts instead of the default JSON message with an emoticon and inline
code: 64 bytes of plain words as `text/plain` to room `bench`, the
request byte for byte as loadgen writes it, in one write (so the server
reads each request whole, and the count moves less between runs). The axum +
tokio peer takes the same flags, so its count for the same load is
`scripts/post-instructions.py --plain benches/peer/target/release/peer`
(only the whole program's: `--answer` names a smolchat function).
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile


ONLY = []
PLAIN = []


def loadgen_request(k):
    """Post `k` byte for byte as `loadgen post` sends it, in one write."""
    # loadgen's message_text(): a number, a time, then plain words.
    text = f"lg {k} {1_700_000_000_000_000 + k} "
    fill = "the quick brown fox jumps over the lazy dog "
    while len(text) < 64:
        text += fill[:64 - len(text)]
    return (f"POST /rooms/bench/messages HTTP/1.1\r\nHost: bench\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(text)}\r\n\r\n{text}").encode()


def post_plain(port, posts):
    """`posts` posts as loadgen sends them, each answer read whole."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        for k in range(posts):
            s.sendall(loadgen_request(k))
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    sys.exit("the server closed the connection")
                got += chunk
                end = got.find(b"\r\n\r\n")
                if end < 0:
                    continue
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", got[:end])
                if len(got) >= end + 4 + int(length.group(1)):
                    break
            if not got.startswith(b"HTTP/1.1 201"):
                sys.exit(f"a post got {got[:12]!r}")


def post_json(port, posts):
    """`posts` posts of a JSON message with an emoticon and inline code."""
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
        (post_plain if PLAIN else post_json)(port, posts)
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
    if "--answer" in args:
        ONLY.append("--toggle-collect=smolchat::http::conn::Conn::answer::*")
        what = "instructions per post in answering it"
    if "--plain" in args:
        PLAIN.append(True)
        what += " (plain text, as loadgen posts)"
    args = [a for a in args if a not in ("--answer", "--plain")]
    if any(a.startswith("--") for a in args):
        sys.exit(__doc__.split("\n\n")[1])
    binary = args[0] if args else "target/release/smolchat"
    n = int(args[1]) if len(args) > 1 else 200
    a = total(binary, n)
    b = total(binary, n + 1000)
    print(f"{binary}: {(b - a) / 1000:,.0f} {what} "
          f"({a:,} for {n} posts, {b:,} for {n + 1000})")


if __name__ == "__main__":
    main()
