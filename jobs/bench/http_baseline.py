"""Part f, the tutorial's architecture: one HTTP request per measurement to a model server."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd

from fishweight.jobs.bench.stats import pct
from fishweight.models.registry import ModelRegistry
from fishweight.runtime.settings import Settings


def bench_http(settings: Settings, seconds: float) -> dict:
    """The tutorial's path: one HTTP request per measurement to a single-threaded server."""
    model = ModelRegistry.for_settings(settings).load_current()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body are separate writes: without this, Nagle + delayed ACK
            # add ~40 ms to every request, which would flatter the UDF.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            weight = float(model.estimator.predict(pd.DataFrame([body]))[0])
            reply = json.dumps({"Weight": weight}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1])
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    latencies = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds:
        i += 1
        body = json.dumps({"Species": "salmon", "Length": 80.0 + i % 17, "Height": 18.0})
        t = time.perf_counter()
        conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
        conn.getresponse().read()
        latencies.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - started
    conn.close()
    server.shutdown()
    return {"requests": len(latencies), "requests_per_s": len(latencies) / elapsed,
            "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99)}
