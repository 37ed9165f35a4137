"""Screenshots of a run's report.html in headless Chromium, for the docs.

    python benchmarks/report_screenshots.py RUN_DIR --out docs/figures/report_synca [--open-top 1]
writes <out>_table.png (summary, metrics and the top of the image table), <out>_graph.png
(the anomaly similarity graph section), <out>_detail.png (the detail view of the top-ranked
image, or of --detail NAME) and <out>_analysis.png (when the run was analysed). Needs selenium, chromium and
chromedriver (the browser test's requirements); fails with the reason when one is missing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from codegraph_ad.report.browser import BrowserUnavailable, chromium_driver, console_errors

def _shoot_section(driver, section_id: str, path: Path) -> bool:
    found = driver.execute_script(
        "const e = document.getElementById(arguments[0]); if (!e) return false;"
        "e.scrollIntoView({block: 'start'}); return true;", section_id)
    if found:
        time.sleep(0.5)
        path.write_bytes(driver.get_screenshot_as_png())
    return bool(found)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", required=True, help="path prefix of the PNG files")
    ap.add_argument("--detail", default=None, help="image name whose detail view to shoot (default: the top row)")
    a = ap.parse_args()
    page = (a.run_dir / "report.html").resolve()
    if not page.is_file():
        sys.exit(f"{page}: no report.html (run `codegraph-ad report {a.run_dir}` first)")
    prefix = Path(a.out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        try:
            driver = chromium_driver(Path(profile), window=(1400, 1800), page_timeout_s=120)
        except BrowserUnavailable as exc:
            sys.exit(str(exc))
        try:
            driver.get(page.as_uri())
            time.sleep(1.0)
            severe = console_errors(driver)
            if severe:
                sys.exit(f"console errors: {severe}")
            written = []
            for section, suffix in (("summary", "table"), ("graph", "graph"), ("analysis", "analysis")):
                target = Path(f"{prefix}_{suffix}.png")
                if _shoot_section(driver, section, target):
                    written.append(target)
            clicked = driver.execute_script(
                "const rows = [...document.querySelectorAll('#images-table tbody tr')];"
                "const row = arguments[0] ? rows.find(r => r.textContent.includes(arguments[0])) : rows[0];"
                "if (!row) return false; row.click(); return true;", a.detail)
            if not clicked:
                sys.exit(f"no table row for {a.detail!r}")
            time.sleep(1.0)
            target = Path(f"{prefix}_detail.png")
            target.write_bytes(driver.get_screenshot_as_png())
            written.append(target)
        finally:
            driver.quit()
    for path in written:
        shrink(path)
        print(path)


def shrink(path: Path) -> None:
    """Palette PNG (256 colours, no dithering): a third of the size, text stays sharp."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


if __name__ == "__main__":
    main()
