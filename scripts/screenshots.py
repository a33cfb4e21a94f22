"""Make the README's screenshots: the dashboard and the report on the quickstart study, and
an LR range test's plot.

Runs the quickstart in a temporary folder, serves `hpo dashboard` on a free loopback port,
and lets headless Chromium take the pictures (`apt-get install -y chromium`).

    python scripts/screenshots.py [--out docs] [--n-trials 50]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--hide-scrollbars"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("no Chromium found; apt-get install -y chromium")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def screenshot(url: str, out: Path, profile: Path, size: str = "1400,1000") -> None:
    subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                    f"--window-size={size}", "--virtual-time-budget=15000",
                    f"--screenshot={out}", url],
                   check=True, capture_output=True, timeout=120)


def wait_for(url: str, seconds: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer in {seconds} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--n-trials", type=int, default=50)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    hpo = [sys.executable, "-m", "hpo"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec = work / "quickstart.yaml"
        shutil.copy(ROOT / "studies" / "quickstart.yaml", spec)
        subprocess.run([*hpo, "run", str(spec), "-q", "--n-trials", str(args.n_trials)],
                       check=True)
        report = work / "report.html"
        subprocess.run([*hpo, "report", str(spec), "--out", str(report)], check=True)
        screenshot(report.as_uri(), args.out / "report.png", work / "profile-report",
                   size="1400,2400")
        port = free_port()
        server = subprocess.Popen([*hpo, "dashboard", str(spec), "--port", str(port),
                                   "--read-only"])
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/api/studies")
            screenshot(f"{base}/dashboard/studies/1", args.out / "dashboard.png",
                       work / "profile-dashboard")
        finally:
            server.terminate()
            server.wait(timeout=30)
        # The LR range test of the README's walk-through.
        plot = work / "lr.html"
        subprocess.run([*hpo, "lr-find", str(ROOT / "studies" / "digits-lr.yaml"), "--out",
                        str(plot)], check=True, capture_output=True)
        screenshot(plot.as_uri(), args.out / "lr-find.png", work / "profile-lr",
                   size="1000,520")
    print(f"Wrote {args.out / 'dashboard.png'}, {args.out / 'report.png'} and "
          f"{args.out / 'lr-find.png'}")


if __name__ == "__main__":
    main()
