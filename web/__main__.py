"""``python -m web``: serve the web gateway for a cluster."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
from pathlib import Path

from web.app import create_app, serve


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m web", description="Tessera's web gateway")
    p.add_argument(
        "--endpoint",
        default=os.environ.get("TESSERA_ENDPOINT", "127.0.0.1:7420"),
        help="metanode address (default: $TESSERA_ENDPOINT or 127.0.0.1:7420)",
    )
    p.add_argument(
        "--listen",
        default=os.environ.get("TESSERA_WEB_LISTEN", "127.0.0.1:7480"),
        help="HOST:PORT to serve on (port 0: any free one)",
    )
    p.add_argument(
        "--public-url",
        default=os.environ.get("TESSERA_WEB_URL", ""),
        help="the URL people reach this gateway at (share links point there)",
    )
    p.add_argument("--spool", help="where uploads wait until committed (default: a temp dir)")
    p.add_argument("--ready-file", help="write {address, url} here as JSON once listening")
    p.add_argument(
        "--secure-cookies",
        action="store_true",
        help="Secure cookies (implied by an https:// public URL)",
    )
    args = p.parse_args(argv)
    host, _, port_text = args.listen.rpartition(":")
    port = int(port_text)
    if port == 0:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
    url = args.public_url or f"http://{host}:{port}"
    app = create_app(
        args.endpoint,
        public_url=url,
        spool=Path(args.spool) if args.spool else None,
        secure_cookies=args.secure_cookies or url.startswith("https://"),
    )

    async def run() -> None:
        task = asyncio.create_task(serve(app, host, port))
        for _ in range(200):  # bounded: up to 10 s to start listening
            await asyncio.sleep(0.05)
            try:
                _, writer = await asyncio.open_connection(host, port)
                writer.close()
                break
            except OSError:
                if task.done():
                    break
        if args.ready_file and not task.done():
            tmp = Path(args.ready_file + ".tmp")
            tmp.write_text(
                json.dumps({"address": f"{host}:{port}", "url": url, "pid": os.getpid()})
            )
            tmp.replace(args.ready_file)
        await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
