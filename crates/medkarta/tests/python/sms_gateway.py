#!/usr/bin/env python3
"""A stand-in SMS gateway for the tests: accepts POST requests, appends each as a JSON line
({"authorization", "body"}) to OUTFILE, and refuses the first FAIL requests with 503 (to see
the server retry). Prints its port on the first line.

  sms_gateway.py OUTFILE FAIL"""
import http.server, json, sys

out, fail = sys.argv[1], int(sys.argv[2])
seen = {"n": 0}


class Gateway(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        seen["n"] += 1
        with open(out, "a") as f:
            f.write(json.dumps({"authorization": self.headers.get("Authorization"), "body": body,
                                "refused": seen["n"] <= fail}) + "\n")
        self.send_response(503 if seen["n"] <= fail else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Gateway)
print(server.server_address[1], flush=True)
server.serve_forever()
