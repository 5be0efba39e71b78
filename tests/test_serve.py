"""`cascade serve` started for real on a free port with a tiny pipeline: the HTTP API (an example becomes a 4x
color PNG; a corrupt file is an error and the next request works; two requests at once both finish; the limits),
and the page itself in a real headless Chromium driven by Playwright (CI installs the browser; never skipped
there)."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "chelsea.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The README's screenshot is this test's, with the bundled weights:
#   CASCADE_SERVE_WEIGHTS=bundled CASCADE_SCREENSHOT=reports/web/serve.png python -m pytest tests/test_serve.py -k browser
SCREENSHOT = os.environ.get("CASCADE_SCREENSHOT")
BUNDLED = os.environ.get("CASCADE_SERVE_WEIGHTS") == "bundled"


@pytest.fixture(scope="module")
def server(tiny_weights):
    weights = [] if BUNDLED else ["--weights", tiny_weights]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cascade", "serve", "--port", "0", *weights, "--max-upload-mb", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    line = proc.stdout.readline()
    match = re.search(r"http://\S+/", line)
    assert match, f"no address printed: {line!r}"
    url = match.group(0)
    for _ in range(100):
        try:
            httpx.get(url + "api/options", timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def submit(url: str, data: bytes, name: str = "photo.png", **query) -> httpx.Response:
    return httpx.post(url + "api/jobs", content=data, params=query, headers={"x-filename": name}, timeout=30)


def wait(url: str, job_id: str) -> dict:
    for _ in range(600):
        job = httpx.get(f"{url}api/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_it_listens_on_localhost_by_default(server):
    assert server.startswith("http://127.0.0.1:")
    page = httpx.get(server, timeout=10)
    assert page.status_code == 200 and "Drop photos here" in page.text


def test_an_example_becomes_a_4x_color_png(server):
    res = submit(server, EXAMPLE.read_bytes(), "chelsea.png")
    assert res.status_code == 202, res.text
    job = wait(server, res.json()["id"])
    assert job["status"] == "done", job
    result = httpx.get(f"{server}api/jobs/{job['id']}/result", timeout=10)
    img = Image.open(io.BytesIO(result.content))
    with Image.open(EXAMPLE) as src:
        assert img.size == (src.width * 4, src.height * 4) == (job["width"], job["height"])
    arr = np.asarray(img.convert("RGB")).astype(int)
    assert img.format == "PNG" and np.abs(arr - arr.mean(axis=2, keepdims=True)).max() > 0  # colored
    assert 'filename="chelsea_restored.png"' in result.headers["content-disposition"]
    before = Image.open(io.BytesIO(httpx.get(f"{server}api/jobs/{job['id']}/input", timeout=10).content))
    assert before.size == Image.open(EXAMPLE).size


def test_a_corrupt_upload_is_an_error_and_the_next_request_works(server):
    bad = wait(server, submit(server, b"\x89PNG\r\n\x1a\n broken", "broken.png").json()["id"])
    assert bad["status"] == "failed" and "not an image" in bad["error"] and "/" not in bad["error"]
    good = wait(server, submit(server, EXAMPLE.read_bytes()).json()["id"])
    assert good["status"] == "done"


def test_two_requests_at_once_both_finish(server):
    with ThreadPoolExecutor(2) as pool:
        ids = list(pool.map(lambda _: submit(server, EXAMPLE.read_bytes()).json()["id"], range(2)))
    assert [wait(server, i)["status"] for i in ids] == ["done", "done"]
    archive = zipfile.ZipFile(
        io.BytesIO(httpx.get(f"{server}api/zip", params={"ids": ",".join(ids)}).content)
    )
    assert archive.namelist() == ["photo_restored.png", "photo_restored_2.png"]


def test_a_color_photo_gets_its_note_and_settings_apply(server):
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[..., 0] = 200
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    job = wait(server, submit(server, buf.getvalue(), mode="sr").json()["id"])
    assert job["status"] == "done" and "converted to luminance" in job["notes"][0]
    out = np.asarray(
        Image.open(io.BytesIO(httpx.get(f"{server}api/jobs/{job['id']}/result").content)).convert("RGB")
    )
    assert out.shape == (96, 128, 3) and (out[..., 0] == out[..., 2]).all()  # SR only: gray out


def test_the_levels_setting_reaches_the_colorizer(server):
    """A faded photo (tones 90-170 of 255) colored with and without its levels stretched: the a*b* differ, the
    tones do not (the output keeps the photo's own)."""
    ramp = np.linspace(90, 170, 40 * 48).reshape(40, 48).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, "PNG")
    outs = {}
    for levels in ("0", "1"):
        job = wait(server, submit(server, buf.getvalue(), mode="color", color_levels=levels).json()["id"])
        assert job["status"] == "done", job
        result = httpx.get(f"{server}api/jobs/{job['id']}/result").content
        outs[levels] = np.asarray(Image.open(io.BytesIO(result)).convert("LAB"), np.float32)
    assert np.abs(outs["0"][..., 0] - outs["1"][..., 0]).max() <= 2
    assert np.abs(outs["0"][..., 1:] - outs["1"][..., 1:]).mean() > 0.5


@pytest.mark.parametrize(
    "data, query, status, message",
    [
        (b"x" * (2 << 20), {}, 413, "larger than the 1 MB"),
        (b"", {}, 400, "empty"),
        (b"png", {"saturation": "nan"}, 400, "saturation must be from 0 to 4"),
        (b"png", {"mode": "both; rm -rf"}, 400, "unknown mode"),
        (b"png", {"render_size": "7"}, 400, "render_size must be one of"),
        (b"png", {"color_levels": "yes"}, 400, "color_levels must be 0 or 1"),
        (b"png", {"sr_model": "../../etc/passwd"}, 400, "unknown SR model"),
        (b"png", {"color_model": "vivid"}, 400, "unknown color model 'vivid'; choose one of pipeline"),
    ],
)
def test_bad_requests_are_refused_with_a_message(server, data, query, status, message):
    res = submit(server, data, **query)
    assert res.status_code == status and message in res.json()["error"]


def test_no_path_from_a_request_reaches_the_file_system(server):
    for path in ("api/jobs/..%2F..%2Fetc%2Fpasswd/result", "api/jobs/0123/result", "api/zip?ids=../x"):
        assert httpx.get(server + path, timeout=10).status_code == 404
    job = wait(server, submit(server, EXAMPLE.read_bytes(), "../../evil name?.png").json()["id"])
    assert job["name"] == "evil name_.png"


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="no Chromium here (CI installs it)")
def test_the_page_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "CI must have Chromium: .ci/run installs Debian's chromium"
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(server)
        page.wait_for_function("document.getElementById('sr_model').options.length > 0")
        assert page.is_checked("#color_levels")  # the pipeline's default, as `cascade run`'s
        page.set_input_files("#files", [str(EXAMPLE), str(ROOT / "examples" / "camera.png")])
        page.wait_for_function(
            "document.querySelectorAll('.compare img.after').length === 2", timeout=120_000
        )
        page.wait_for_function(
            "[...document.querySelectorAll('img.after')].every(i => i.complete && i.naturalWidth)"
        )
        sizes = page.eval_on_selector_all(
            "img.after", "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])"
        )
        assert sorted(map(tuple, sizes)) == [(448, 300), (512, 512)]
        assert page.locator(".state.failed").count() == 0
        assert not page.locator("#zip").is_disabled()
        slider = page.locator(".compare input").first
        slider.fill("20")
        assert "20%" in page.eval_on_selector(".compare .after", "e => e.style.clipPath")
        shot = tmp_path / "serve.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert Image.open(shot).size[0] == 1100
    if SCREENSHOT:
        shutil.copyfile(shot, SCREENSHOT)
