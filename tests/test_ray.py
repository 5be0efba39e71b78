"""`cascade run --ray` on a local Ray instance the test starts (2 CPUs, no dashboard) with the tiny pipeline: the
same outputs, pixel for pixel, as a local run of the same folder, bad inputs included; and an actor killed in the
middle of the run still ends with every good input written."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")

from cascade import Pipeline  # noqa: E402
from cascade.ray_run import RestoreActor, run_on_ray  # noqa: E402
from tests.conftest import save_gray  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the crashing actor below travels by value
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "in"
    for i in range(8):
        save_gray(src / ("sub" if i % 3 == 0 else "") / f"p{i}.png", size=(40 + 4 * i, 32), seed=i)
    Image.fromarray(np.full((20, 24, 3), (200, 40, 10), np.uint8)).save(src / "color.jpg")  # a note
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (src / "empty.tif").write_bytes(b"")
    os.mkfifo(src / "fifo.png")
    return src


def pixels(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): np.asarray(Image.open(p)).tobytes() for p in sorted(folder.rglob("*.png"))
    }


def test_the_same_outputs_as_a_local_run(local_ray, photos, tmp_path, tiny_weights):
    local = Pipeline.from_pretrained(tiny_weights, device="cpu").run_dir(
        photos, tmp_path / "local", recursive=True, progress=False
    )
    remote = run_on_ray(
        photos,
        tmp_path / "ray",
        weights=tiny_weights,
        settings={"device": "cpu"},
        recursive=True,
        progress=False,
    )
    assert [str(p) for p in remote.processed] == [str(p) for p in local.processed] and len(
        local.processed
    ) == 9
    assert sorted(map(str, remote.failed)) == sorted(map(str, local.failed)) and len(local.failed) == 3
    assert sorted(map(str, remote.notes)) == sorted(map(str, local.notes))
    assert pixels(tmp_path / "ray") == pixels(tmp_path / "local")
    again = run_on_ray(
        photos,
        tmp_path / "ray",
        weights=tiny_weights,
        settings={"device": "cpu"},
        recursive=True,
        skip_existing=True,
        progress=False,
    )
    assert len(again.skipped) == 9 and not again.processed


class CrashOnce(RestoreActor):
    """Kills its own process at its first batch, once per run (a marker file remembers across the restart)."""

    marker: str = ""  # set by the test before the run; the class travels to the workers by value

    def __call__(self, batch):
        marker = Path(self.marker)
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().__call__(batch)


def test_an_actor_killed_during_the_run_still_ends_with_every_good_input_written(
    local_ray, photos, tmp_path, tiny_weights, monkeypatch
):
    marker = tmp_path / "crashed"
    monkeypatch.setattr(CrashOnce, "marker", str(marker))
    report = run_on_ray(
        photos, tmp_path / "out", weights=tiny_weights, settings={"device": "cpu"}, recursive=True, progress=False,
        actor_class=CrashOnce,
    )  # fmt: skip
    assert marker.exists()  # an actor did die
    assert len(report.processed) == 9 and len(report.failed) == 3
    assert len(pixels(tmp_path / "out")) == 9
    assert not list((tmp_path / "out").rglob("*.cascade-tmp"))
