"""Local stand-ins for the message providers, so that a local run delivers somewhere visible.

    python -m deploy.local.sinks --dir .run/outbox

- SMTP on 127.0.0.1:1025: every e-mail is stored as a file in ``<dir>/mail`` (a Maildir);
- SMS provider on 127.0.0.1:8090 (``POST /sms``) and webhook receiver on 127.0.0.1:8091: every
  request body is appended to ``<dir>/sms.jsonl`` / ``<dir>/webhooks.jsonl``.

These are the defaults of the notifications service's settings; production points those settings
at real providers instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mailbox
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox


def _http_sink(port: int, log: Path) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            record = {"path": self.path, "idempotency_key": self.headers.get("Idempotency-Key"),
                      "body": body.decode("utf-8", errors="replace")}
            with lock, log.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            payload = json.dumps({"status": "accepted", "id": record["idempotency_key"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def run(directory: Path, smtp_port: int, sms_port: int, webhook_port: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    mailbox.Maildir(directory / "mail", create=True)
    smtp = Controller(Mailbox(directory / "mail"), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    servers = [_http_sink(sms_port, directory / "sms.jsonl"), _http_sink(webhook_port, directory / "webhooks.jsonl")]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"sinks ready: smtp :{smtp_port}, sms :{sms_port}, webhooks :{webhook_port}, writing to {directory}",
          flush=True)
    await stop.wait()
    smtp.stop()
    for server in servers:
        server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(".run/outbox"))
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--sms-port", type=int, default=8090)
    parser.add_argument("--webhook-port", type=int, default=8091)
    args = parser.parse_args()
    asyncio.run(run(args.dir, args.smtp_port, args.sms_port, args.webhook_port))


if __name__ == "__main__":
    main()
