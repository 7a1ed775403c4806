"""A webhook receiver for the tests: verifies every delivery with the Standard Webhooks
Python library (standardwebhooks, installed by .ci/run) and appends what it accepted to
a file, one JSON line each.

    python webhook_receiver.py SECRET_FILE PORT FOLDER

FOLDER/mode says how to answer: "ok" (or no file): verify, record, 204; "fail": 500;
"slow": answer after 3 seconds; a delivery that does not verify gets 400 and is recorded
in FOLDER/refused.
"""

import http.server
import json
import pathlib
import sys
import time

from standardwebhooks.webhooks import Webhook

secret_file, port, folder = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
hook = Webhook(pathlib.Path(secret_file).read_text().strip())


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        mode_file = folder / "mode"
        mode = mode_file.read_text().strip() if mode_file.exists() else "ok"
        if mode == "fail":
            self.send_response(500)
            self.end_headers()
            return
        if mode == "slow":
            time.sleep(3)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload = hook.verify(body, headers)
        except Exception as e:  # the library's WebhookVerificationError and others
            with open(folder / "refused", "a") as f:
                f.write(json.dumps({"error": str(e)}) + "\n")
            self.send_response(400)
            self.end_headers()
            return
        with open(folder / "received", "a") as f:
            f.write(json.dumps({"id": headers["webhook-id"], "payload": payload}) + "\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", port), Handler)
(folder / "ready").write_text(str(port))
server.serve_forever()
