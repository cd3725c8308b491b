#!/usr/bin/env python3
"""sinkserver.py: real servers on loopback for the output specs (tests/e2e_outputs_spec.lua).

    python3 tests/support/sinkserver.py MODE --store FILE [--port-file FILE] [--port N] [options]

MODE
  http        takes POSTs; each body's lines are appended to --store
  es          an Elasticsearch _bulk endpoint: `create` and `index` actions by _id, kept in
              --store (one JSON line per document: {"_index","_id","_source","version"}), read
              back at start, so a restarted server still holds what it took: a create of an _id
              it holds answers 409, as Elasticsearch does
  syslog-tcp  RFC 6587 octet-counted messages, each appended to --store as one JSON string line
  syslog-udp  one datagram a message, the same

Faults, for the first requests (http and es):
  --status CODE,CODE,...   answer these statuses to the first requests, in order (then 200)
  --hang N                 accept the first N requests and never answer them
  --fail-items N           es: refuse the first N items (status 429, es_rejected_execution_exception)
  --headers FILE           append each request's headers to FILE, one JSON object a line

It prints nothing on stdout; --port-file gets the port once it listens. SIGTERM stops it.
"""
import argparse
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["http", "es", "syslog-tcp", "syslog-udp"])
ap.add_argument("--store", required=True)
ap.add_argument("--port", type=int, default=0)
ap.add_argument("--port-file")
ap.add_argument("--status", default="")
ap.add_argument("--hang", type=int, default=0)
ap.add_argument("--fail-items", type=int, default=0)
ap.add_argument("--headers")
args = ap.parse_args()

lock = threading.Lock()
statuses = [int(s) for s in args.status.split(",") if s]
state = {"requests": 0, "hang": args.hang, "fail_items": args.fail_items}
docs = {}
if args.mode == "es" and os.path.exists(args.store):
    with open(args.store) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                docs[(d["_index"], d["_id"])] = d


def append(line):
    with open(args.store, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode("utf-8", "replace")
        if args.headers:
            with lock, open(args.headers, "a") as f:
                f.write(json.dumps({k.lower(): v for k, v in self.headers.items()}) + "\n")
        with lock:
            state["requests"] += 1
            if state["hang"] > 0:
                state["hang"] -= 1
                hang = True
            else:
                hang = False
            status = statuses.pop(0) if statuses else 200
        if hang:
            time.sleep(3600)
            return
        if status != 200:
            self.reply(status, '{"error":"the test server says %d"}\nmore' % status)
            return
        if args.mode == "http":
            with lock:
                for line in body.splitlines():
                    if line:
                        append(line)
            self.reply(200, '{"ok":true}')
            return
        if not self.path.startswith("/_bulk"):
            self.reply(404, '{"error":"no such endpoint"}')
            return
        lines = [l for l in body.split("\n") if l]
        items = []
        with lock:
            for i in range(0, len(lines) - 1, 2):
                action = json.loads(lines[i])
                (op, meta), = action.items()
                key = (meta.get("_index", ""), meta.get("_id"))
                if state["fail_items"] > 0:
                    state["fail_items"] -= 1
                    items.append({op: {"_id": key[1], "status": 429, "error": {
                        "type": "es_rejected_execution_exception", "reason": "the test server refuses it"}}})
                    continue
                if op == "create" and key in docs:
                    items.append({op: {"_id": key[1], "status": 409, "error": {
                        "type": "version_conflict_engine_exception",
                        "reason": "[%s]: version conflict, document already exists" % key[1]}}})
                    continue
                version = docs[key]["version"] + 1 if key in docs else 1
                d = {"_index": key[0], "_id": key[1], "_source": json.loads(lines[i + 1]), "version": version}
                docs[key] = d
                append(json.dumps(d))
                items.append({op: {"_id": key[1], "status": 201 if version == 1 else 200, "result":
                                   "created" if version == 1 else "updated"}})
        errors = any(next(iter(it.values()))["status"] >= 300 for it in items)
        self.reply(200, json.dumps({"took": 1, "errors": errors, "items": items}))


def serve_http():
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    return server, server.server_address[1]


class TCPSyslog(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            digits = b""
            while True:
                c = self.rfile.read(1)
                if not c:
                    return
                if c == b" ":
                    break
                digits += c
            msg = self.rfile.read(int(digits))
            with lock:
                append(json.dumps(msg.decode("utf-8", "replace")))


class BigBufferUDPServer(socketserver.UDPServer):
    # A burst of alerts (a batch of kilobyte documents, one datagram each) overflows the
    # default 208 KiB receive buffer before this Python loop drains it, and the kernel drops
    # the rest, as UDP may: the test is of trailhound's sending, not of this reader's pace.
    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        super().server_bind()


class UDPSyslog(socketserver.BaseRequestHandler):
    def handle(self):
        with lock:
            append(json.dumps(self.request[0].decode("utf-8", "replace")))


def main():
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    if args.mode in ("http", "es"):
        server, port = serve_http()
    elif args.mode == "syslog-tcp":
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        socketserver.ThreadingTCPServer.daemon_threads = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", args.port), TCPSyslog)
        port = server.server_address[1]
    else:
        server = BigBufferUDPServer(("127.0.0.1", args.port), UDPSyslog)
        port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.rename(tmp, args.port_file)
    server.serve_forever()


main()
