"""A webhook receiver for trying Sendstream's webhooks locally: verifies each
request the Standard Webhooks way (with the `standardwebhooks` library, as any
receiver may) and prints the event.

    .venv/bin/python examples/webhook_receiver.py --secret whsec_... [--port 9000]

Answers 204 to a request whose signature verifies and 400 to any other (a
4xx that is not 408/429 is not retried by Sendstream: see docs/webhooks.md).
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


def handler_for(webhook: Webhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            try:
                event = webhook.verify(body, dict(self.headers))
            except WebhookVerificationError as exc:
                print(f"refused: {exc}")
                self.send_response(400)
            else:
                print(self.headers["webhook-id"], json.dumps(event, indent=2))
                self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secret", required=True, help="the endpoint's whsec_... secret")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(Webhook(args.secret)))
    print(f"listening on http://127.0.0.1:{args.port}/")
    server.serve_forever()


if __name__ == "__main__":
    main()
