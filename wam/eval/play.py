"""``wam play``: drive a model's dream from a browser, beside the real simulator stepped with the same actions.

A local HTTP server (``http.server``, bound to 127.0.0.1 unless told otherwise) serves one page and a small JSON
API; one person drives one session:

- ``GET /``: the page (keyboard: arrows move in x/y, W/S in z, space closes the gripper, R resets; on-screen
  buttons do the same);
- ``GET /state``: the current frames (real and dreamed, PNG data URLs), the step, the PSNR of the dream against
  the real frame and the latency of the last dream step;
- ``POST /step`` with ``{"command": [x, y, z, grip]}`` (each in [-1, 1]): the suite turns the command into an
  action (``Suite.teleop_action``), which is repeated for one dream step (``stride`` control steps) in the dream
  and in the real simulator;
- ``POST /reset`` with ``{"seed": S}`` (optional): both start again from the same seeded start.

Bad requests are refused with a JSON ``{"error": ...}`` and a 4xx status and change nothing: bodies over
``MAX_BODY`` bytes, anything but a JSON object, commands that are not four finite numbers in [-1, 1], unknown
paths; a step asked for while another is computed is refused with 429 (the page sends one at a time). An error
inside a step answers 500 with its message and the server keeps serving.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from annotated_types import Ge, Le

from wam.compute import resolve_device
from wam.data.collect import EVAL_SEED_BASE
from wam.data.lerobot import encode_png
from wam.deployment.dream import DreamEnv
from wam.model import WorldActionModel
from wam.options import CheckedOptions

MAX_BODY = 1024  # bytes; a command is a few dozen
T = TypeVar("T")


@dataclass
class PlayConfig(CheckedOptions):
    """Drive the model's dream with the keyboard in a browser, beside the real simulator (a local web page)."""

    run: Path
    """Run directory written by `wam train` (holds model/); the model must predict pixels given actions."""
    task: str
    """A task of the model's suite, e.g. drawer-open-v3 or pusht."""
    seed: Annotated[int, Ge(0)] = 0
    """Offset into the evaluation seeds for the first start (the page's reset draws the next ones)."""
    host: str = "127.0.0.1"
    """Address to listen on; anything but a loopback address exposes the model to the network."""
    port: Annotated[int, Ge(0), Le(65535)] = 8765
    """Port to listen on (0: any free port; the address is printed)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"


class RequestError(ValueError):
    """A request the server refuses, with its HTTP status."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def png_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode()


class PlaySession:
    """The dream and the real simulator of one task, stepped together with the actions a person commands.

    Everything runs on the session's own thread (``run``): an OpenGL context for offscreen rendering belongs to the
    thread that made it, and the server answers each request on a thread of its own."""

    @classmethod
    def start(cls, model: WorldActionModel, task: str, seed: int) -> PlaySession:
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wam-play")
        session = worker.submit(cls, model, task, seed).result()
        session.worker = worker
        return session

    def run(self, work: Callable[[], T]) -> T:
        """``work()`` on the session's thread."""
        return self.worker.submit(work).result()

    def __init__(self, model: WorldActionModel, task: str, seed: int):
        self.dream = DreamEnv(model, task, seed=seed)
        self.suite, self.task = self.dream.suite, task
        size = model.config.observation_shapes[self.suite.image_key][0]
        self.real = self.suite.make_env(task, track="vision", image_size=size)
        self.busy = threading.Lock()
        self.seed = seed
        self.reset(seed)

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        self.seed = self.seed + 1 if seed is None else seed
        real, _ = self.real.reset(seed=self.seed)
        dreamed, _ = self.dream.reset(seed=self.seed)
        self.last = {"real": real, "dream": dreamed, "psnr": None, "latency_ms": None, "step": 0}
        return self.view()

    def step(self, command: np.ndarray) -> dict[str, Any]:
        state = self.last["real"][self.suite.state_key]
        action = self.suite.teleop_action(state, command)
        chunk = np.repeat(action[None], self.dream.stride, axis=0)
        start = time.perf_counter()
        dreamed, *_ = self.dream.step(chunk)
        latency = time.perf_counter() - start
        for a in chunk:
            real, *_ = self.real.step(a)
        error = np.mean((real[self.suite.image_key] / 255.0 - dreamed[self.suite.image_key] / 255.0) ** 2)
        self.last = {"real": real, "dream": dreamed, "psnr": float(10 * math.log10(1 / max(error, 1e-10))),
                     "latency_ms": 1e3 * latency, "step": self.last["step"] + 1}
        return self.view()

    def view(self) -> dict[str, Any]:
        key = self.suite.image_key
        return {"task": self.task, "suite": self.suite.name, "seed": self.seed, "stride": self.dream.stride,
                "step": self.last["step"], "psnr": self.last["psnr"], "latency_ms": self.last["latency_ms"],
                "real": png_url(self.last["real"][key]), "dream": png_url(self.last["dream"][key])}

    def close(self) -> None:
        def close() -> None:
            self.dream.close()
            self.real.close()

        self.run(close)
        self.worker.shutdown()


def parse_command(body: Any) -> np.ndarray:
    """``{"command": [x, y, z, grip]}`` with four finite numbers in [-1, 1], or ``RequestError``."""
    command = body.get("command") if isinstance(body, dict) else None
    if (not isinstance(command, list) or len(command) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in command)):
        raise RequestError(HTTPStatus.BAD_REQUEST, 'send {"command": [x, y, z, grip]}: four numbers in [-1, 1]')
    values = np.asarray(command, dtype=np.float64)
    if not np.isfinite(values).all() or np.abs(values).max() > 1:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"command values must be finite and in [-1, 1], got {command}")
    return values.astype(np.float32)


def parse_seed(body: Any) -> int | None:
    seed = body.get("seed") if isinstance(body, dict) else None
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**62):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"seed must be an integer in [0, 2^62), got {seed!r}")
    return seed


def make_handler(session: PlaySession) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "wam-play"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            pass  # one line per key press would drown the terminal

        def do_GET(self) -> None:
            if self.path == "/":
                self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
            elif self.path == "/state":
                self._json(HTTPStatus.OK, session.run(session.view))
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path[:80]!r}; open /"})

        def do_POST(self) -> None:
            try:
                body = self._body()
                if self.path not in ("/step", "/reset"):
                    raise RequestError(HTTPStatus.NOT_FOUND, f"no endpoint {self.path[:80]!r}; POST /step or /reset")
                work = ((lambda: session.step(parse_command(body))) if self.path == "/step"
                        else (lambda: session.reset(parse_seed(body))))
                if not session.busy.acquire(blocking=False):
                    raise RequestError(HTTPStatus.TOO_MANY_REQUESTS, "busy with the previous step; send one at a time")
                try:
                    self._json(HTTPStatus.OK, session.run(work))
                finally:
                    session.busy.release()
            except RequestError as e:
                self._json(e.status, {"error": str(e)})
            except Exception as e:  # noqa: BLE001 - the server outlives any failed step and says why
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(e).__name__}: {e}"})

        def _body(self) -> Any:
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header") from None
            if not 0 <= length <= MAX_BODY:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"bodies are at most {MAX_BODY} bytes")
            try:
                return json.loads(self.rfile.read(length) or b"{}")
            except (ValueError, UnicodeDecodeError):
                raise RequestError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None

        def _json(self, status: HTTPStatus, data: dict[str, Any]) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def _send(self, status: HTTPStatus, payload: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(payload)

    return Handler


class PlayServer(ThreadingHTTPServer):
    """A thread per request (each refused at once while a step runs); a deep accept queue, so a burst of requests
    is answered rather than reset by the operating system."""

    daemon_threads = True
    request_queue_size = 256


def make_server(cfg: PlayConfig) -> tuple[ThreadingHTTPServer, PlaySession]:
    """The session and its server, listening but not yet serving (``serve_forever``)."""
    model = WorldActionModel.load(Path(cfg.run) / "model", device=resolve_device(cfg.device))
    session = PlaySession.start(model, cfg.task, EVAL_SEED_BASE + cfg.seed)
    try:
        server = PlayServer((cfg.host, cfg.port), make_handler(session))
    except OSError as e:  # the port is taken, or the address is not this machine's
        session.close()
        raise ValueError(f"cannot listen on {cfg.host}:{cfg.port} ({e.strerror or e}); pass another --port (0 picks "
                         "a free one) or --host") from None
    return server, session


def run_play(cfg: PlayConfig) -> None:
    server, session = make_server(cfg)
    host, port = server.server_address[:2]
    print(f"wam play: {cfg.task} in the dream of {cfg.run} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        session.close()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wam play</title><link rel="icon" href="data:,">
<style>
body { font-family: system-ui, sans-serif; margin: 2em; background: #fafafa; color: #222; }
.frames { display: flex; gap: 2em; }
figure { margin: 0; text-align: center; }
img { width: 320px; height: 320px; image-rendering: pixelated; border: 1px solid #ccc; background: #fff; }
button { font-size: 1.1em; margin: 0.15em; min-width: 3em; }
#status { margin: 1em 0; font-variant-numeric: tabular-nums; }
#error { color: #b00; }
</style></head>
<body>
<h1>wam play: <span id="task"></span></h1>
<p>Arrows move in x/y, W/S in z, space closes the gripper, R starts again. Each key is one dream step; the real
simulator takes the same actions.</p>
<div class="frames">
  <figure><img id="real" alt="real simulator"><figcaption>real simulator</figcaption></figure>
  <figure><img id="dream" alt="the model's dream"><figcaption>the model's dream</figcaption></figure>
</div>
<div id="status">step <span id="step">0</span> &middot; PSNR <span id="psnr">-</span> dB &middot;
  dream step <span id="latency">-</span> ms</div>
<div>
  <button data-command="-1,0,0,0">&larr;</button><button data-command="1,0,0,0">&rarr;</button>
  <button data-command="0,-1,0,0">&uarr;</button><button data-command="0,1,0,0">&darr;</button>
  <button data-command="0,0,1,0">W</button><button data-command="0,0,-1,0">S</button>
  <button data-command="0,0,0,1">grip</button><button id="reset">reset</button>
</div>
<p id="error"></p>
<script>
let pending = false;
const keys = {ArrowLeft: [-1, 0, 0, 0], ArrowRight: [1, 0, 0, 0], ArrowUp: [0, -1, 0, 0], ArrowDown: [0, 1, 0, 0],
              w: [0, 0, 1, 0], s: [0, 0, -1, 0], " ": [0, 0, 0, 1]};
function show(view) {
  document.getElementById("task").textContent = view.suite + " / " + view.task;
  document.getElementById("real").src = view.real;
  document.getElementById("dream").src = view.dream;
  document.getElementById("step").textContent = view.step;
  document.getElementById("psnr").textContent = view.psnr === null ? "-" : view.psnr.toFixed(1);
  document.getElementById("latency").textContent = view.latency_ms === null ? "-" : view.latency_ms.toFixed(0);
}
async function send(path, body) {
  if (pending) return;  // one request at a time: the server refuses a second one
  pending = true;
  try {
    const response = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                        body: JSON.stringify(body)});
    const data = await response.json();
    document.getElementById("error").textContent = response.ok ? "" : data.error;
    if (response.ok) show(data);
  } finally {
    pending = false;
  }
}
document.addEventListener("keydown", (event) => {
  if (event.key === "r") { send("/reset", {}); return; }
  const command = keys[event.key];
  if (command) { event.preventDefault(); send("/step", {command: command}); }
});
for (const button of document.querySelectorAll("button[data-command]")) {
  button.addEventListener("click", () => send("/step", {command: button.dataset.command.split(",").map(Number)}));
}
document.getElementById("reset").addEventListener("click", () => send("/reset", {}));
fetch("/state").then((response) => response.json()).then(show);
</script>
</body></html>
"""
