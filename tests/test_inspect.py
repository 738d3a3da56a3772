"""`weightzoo inspect`: one self-contained HTML page with the dataset's plots, checked in a browser."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import pytest

from weightzoo.cli import main
from weightzoo.research.inspect_report import report_html, write_report

TITLES = ["Acceptance", "Per-pattern recall", "Target gain and off-target change", "Token lengths"]
TITLES += ["Architectures", "Patterns"]


@pytest.fixture(scope="module")
def dataset(finished_dataset):
    return finished_dataset


def test_the_page_embeds_every_plot_as_a_png(dataset):
    import matplotlib.image

    page = report_html(dataset)
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)">', page)
    assert [title for title, _ in images] == TITLES
    for _, data in images:
        pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 500 and pixels.std() > 0.05  # not blank
    assert "accepted of" in page and "http" not in page.replace("http://www.w3.org", "")  # nothing fetched


def test_in_a_browser_every_plot_loads(dataset, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no headless Chromium here (Debian: apt-get install chromium)")
    page = write_report(dataset, tmp_path / "report.html")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-images-loaded="6"' in dom.stdout  # the page's own check: six images decoded
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1000,3200", page.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (3200, 1000)
    rows_with_ink = (pixels[:, :, :3].std(axis=(1, 2)) > 0.02).sum()
    assert rows_with_ink > 1500  # six plots and their headings fill most of the page


def test_the_command_writes_beside_the_data_and_refuses_other_folders(dataset, tmp_path, capsys):
    assert main(["inspect", str(dataset)]) == 0
    assert (dataset / "report.html").exists()
    assert main(["inspect", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
