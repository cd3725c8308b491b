#!/usr/bin/env python3
"""httpclient.py: a real HTTP client, and misbehaving ones, for tests/e2e_metrics_spec.lua.

    python3 tests/support/httpclient.py get HOST PORT [--method M] [--path P] [--raw TEXT]
        One request; prints {"status", "headers" (names lowercased), "body", "elapsed"} as
        JSON. --raw sends TEXT as it is (\\r and \\n escapes undone) instead of a request.
    python3 tests/support/httpclient.py hold HOST PORT --count N --seconds S --report FILE
        N clients that connect and send nothing; each notes when the server closed it
        (null: still open after S seconds). FILE gets {"closed_after": [...]}.
    python3 tests/support/httpclient.py slow HOST PORT --seconds S --report FILE
        One client with a small receive buffer that sends GET /metrics and reads nothing for
        S seconds, then reads what is there: FILE gets {"received", "content_length", "eof"}.

Each mode writes FILE (or prints) once it is done; "ready" is appended to FILE.ready once
every client is connected, so a spec can go on while they hold.
"""
import argparse
import json
import os
import select
import socket
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["get", "hold", "slow"])
ap.add_argument("host")
ap.add_argument("port", type=int)
ap.add_argument("--method", default="GET")
ap.add_argument("--path", default="/metrics")
ap.add_argument("--raw")
ap.add_argument("--count", type=int, default=1)
ap.add_argument("--seconds", type=float, default=10)
ap.add_argument("--report")
args = ap.parse_args()


def connect(rcvbuf=None):
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((args.host, args.port))
    return s


def read_all(s):
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return data, False
        if not chunk:
            return data, True
        data += chunk


def ready():
    with open(args.report + ".ready", "w") as f:
        f.write("ready\n")


def report(obj):
    with open(args.report + ".tmp", "w") as f:
        json.dump(obj, f)
    os.rename(args.report + ".tmp", args.report)


if args.mode == "get":
    t0 = time.time()
    s = connect()
    if args.raw is not None:
        s.sendall(args.raw.replace("\\r", "\r").replace("\\n", "\n").encode())
    else:
        s.sendall(("%s %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/plain\r\nUser-Agent: httpclient.py\r\n\r\n"
                   % (args.method, args.path, args.host, args.port)).encode())
    data, eof = read_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    json.dump({"status": status, "status_line": lines[0] if lines else "", "headers": headers,
               "body": body.decode("utf-8"), "eof": eof, "elapsed": time.time() - t0}, sys.stdout)
elif args.mode == "hold":
    t0 = time.time()
    socks = [connect() for _ in range(args.count)]
    ready()
    closed = [None] * len(socks)
    while time.time() - t0 < args.seconds and None in closed:
        live = [s for i, s in enumerate(socks) if closed[i] is None]
        r, _, _ = select.select(live, [], [], 0.05)
        for s in r:
            i = socks.index(s)
            try:
                gone = s.recv(4096) == b""
            except ConnectionResetError:
                gone = True
            if gone:
                closed[i] = time.time() - t0
    report({"closed_after": closed})
elif args.mode == "slow":
    s = connect(rcvbuf=4096)
    s.sendall(("GET /metrics HTTP/1.1\r\nHost: %s\r\n\r\n" % args.host).encode())
    ready()
    time.sleep(args.seconds)
    data, eof = read_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    length = None
    for line in head.decode("latin-1").split("\r\n"):
        if line.lower().startswith("content-length:"):
            length = int(line.split(":")[1])
    report({"received": len(body), "content_length": length, "eof": eof})
