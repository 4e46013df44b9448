"""A real uvicorn server on a free loopback port, in a thread (browser and load tests)."""
from __future__ import annotations

import contextlib
import socket
import threading
import time

SERVER_START_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app, port: int | None = None):
    """Run ``app`` on 127.0.0.1; yields the base URL."""
    import uvicorn
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t > SERVER_START_S:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(SERVER_START_S)
