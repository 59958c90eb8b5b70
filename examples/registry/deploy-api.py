#!/usr/bin/env python3
"""A stand-in "deploy API" for examples/registry, on 127.0.0.1:8089 (or the port given).

POST /deployments with a JSON body answers 201 {"id": "dep-N", ...} and prints what it was
told; anything else answers 404. Standard library only.

    python3 examples/registry/deploy-api.py [PORT]
"""

import itertools
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ids = itertools.count(1)


class DeployApi(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/deployments":
            return self.answer(404, {"error": f"no route {self.path}"})
        length = int(self.headers.get("content-length", "0"))
        try:
            told = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as e:
            return self.answer(400, {"error": f"the body is not JSON: {e}"})
        deployment = {"id": f"dep-{next(ids)}", **told}
        print(f"deployment {json.dumps(deployment)}", flush=True)
        self.answer(201, deployment)

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8089
    print(f"deploy API on http://127.0.0.1:{port}/deployments", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), DeployApi).serve_forever()
