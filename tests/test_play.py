"""``wam play``: the dream driven from a browser page (headless Chromium), and a server that refuses bad requests
without losing its session."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, headless_chromium, wam_cli, wam_refused
from wam.eval.play import MAX_BODY, PlayConfig, make_server

pytestmark = pytest.mark.e2e
TASK = "drawer-open-v3"


@pytest.fixture(scope="module")
def server(vision_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("play") / "run"
    result = wam_cli("train", "--data", vision_data, "--out", run, "--substrate", "pixel-decoded", "--coupling",
                     "joint", "--steps", "3", "--batch-size", "4", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    server, session = make_server(PlayConfig(run=run, task=TASK, port=0, device="cpu"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", session, run
    server.shutdown()
    server.server_close()
    session.close()


def request(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_step_moves_the_dream_and_the_real_simulator_together(server):
    url, session, _ = server
    status, start = request(f"{url}/reset", json.dumps({"seed": 3}).encode())
    assert status == 200 and start["step"] == 0 and start["psnr"] is None and start["seed"] == 3
    status, view = request(f"{url}/step", json.dumps({"command": [1, 0, 0, 0]}).encode())
    assert status == 200 and view["step"] == 1 and np.isfinite(view["psnr"]) and view["latency_ms"] > 0
    assert view["real"].startswith("data:image/png;base64,") and view["real"] != start["real"], "the arm moved"
    assert view["dream"] != start["dream"]
    hand = session.last["real"]["observation.state"][:3]
    assert np.linalg.norm(hand - session.last["dream"]["observation.state"][:3]) < 0.02, "same actions in both"


@pytest.mark.parametrize("body, status, message", [
    (b"not json", 400, "not JSON"),
    (b'{"command": [NaN, 0, 0, 0]}', 400, "finite"),
    (b'{"command": [2, 0, 0, 0]}', 400, "in [-1, 1]"),
    (b'{"command": [1, 0, 0]}', 400, "four numbers"),
    (b'{"command": ["left", 0, 0, 0]}', 400, "four numbers"),
    (b'[1, 2]', 400, "four numbers"),
    (b"{" + b" " * MAX_BODY + b"}", 413, "at most"),
])
def test_bad_requests_are_refused_and_change_nothing(server, body, status, message):
    url, session, _ = server
    before = request(f"{url}/state")[1]
    got, answer = request(f"{url}/step", body)
    assert got == status and message in answer["error"], answer
    assert request(f"{url}/state")[1] == before


def test_unknown_paths_seeds_and_a_flood_are_refused_and_the_server_lives(server):
    url, session, _ = server
    assert request(f"{url}/admin")[0] == 404
    assert request(f"{url}/step/../admin", b"{}")[0] == 404
    assert request(f"{url}/reset", b'{"seed": -4}')[0] == 400
    with session.busy:  # a step is being computed: the next one waits for nobody
        status, answer = request(f"{url}/step", b'{"command": [0, 1, 0, 0]}')
    assert status == 429 and "one at a time" in answer["error"]
    body = json.dumps({"command": [0, 0, 1, 0]}).encode()
    with ThreadPoolExecutor(16) as pool:  # many at once: each is served or refused, none breaks the server
        statuses = list(pool.map(lambda _: request(f"{url}/step", body)[0], range(32)))
    assert set(statuses) <= {200, 429} and 200 in statuses
    assert request(f"{url}/state")[0] == 200


def test_a_taken_port_is_one_clear_error(server):
    url, _, run = server
    port = url.rsplit(":", 1)[1]
    assert_one_line_error(wam_refused("play", "--run", run, "--task", TASK, "--port", port, "--device", "cpu"),
                          f"cannot listen on 127.0.0.1:{port}", "another --port")


def test_a_model_that_cannot_dream_is_one_clear_error(state_data, tmp_path):
    run = tmp_path / "vla"
    assert wam_cli("train", "--preset", "vla", "--data", state_data, "--out", run, "--steps", "1",
                   "--batch-size", "4").returncode == 0
    assert_one_line_error(wam_refused("play", "--run", run, "--task", TASK), "has no pixel decoder")


@pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs Debian's chromium and chromium-driver "
                    "(scripts/test.sh installs them)")
def test_the_page_drives_the_dream_in_headless_chromium(server, tmp_path):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = server
    request(f"{url}/reset", b'{"seed": 5}')
    driver = headless_chromium("--window-size=900,700")
    try:
        driver.get(url + "/")
        wait = WebDriverWait(driver, 60)
        dream = driver.find_element("id", "dream")
        wait.until(lambda d: (dream.get_attribute("src") or "").startswith("data:image/png"))
        before = dream.get_attribute("src")
        driver.find_element("tag name", "body").send_keys(Keys.ARROW_RIGHT)
        wait.until(lambda d: d.find_element("id", "step").text == "1")
        assert dream.get_attribute("src") != before, "the key press changed the predicted frame"
        assert driver.find_element("id", "psnr").text not in ("", "-")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", dream)
        driver.find_element("css selector", "button[data-command='0,1,0,0']").click()
        wait.until(lambda d: d.find_element("id", "step").text == "2")
        driver.save_screenshot(str(tmp_path / "play.png"))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
