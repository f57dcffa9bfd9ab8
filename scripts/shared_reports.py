"""Write csmetrics reports of the shared data sets (flipStartup, RavenStack) for the dashboard check.

    python scripts/shared_reports.py OUT_DIR [--shared ../shared/data]

flipStartup: six currencies at the package's fixed rates, annual lines. RavenStack: messy, most
subscriptions without an end date, mapped as open-ended interval lines (§17); run in quarantine mode so the dashboard shows what was set aside.
The mappings are the test fixtures' (tests/shared_data.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from csmetrics.report import report  # noqa: E402
from tests.shared_data import flipstartup_billing, ravenstack_tables  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    billing, fx = flipstartup_billing(args.shared)
    report({"billing": billing, "fx": fx}, quarantine=True).write(args.out / "flipstartup")
    report(ravenstack_tables(args.shared, open_ended=True), quarantine=True).write(args.out / "ravenstack")
    print(f"wrote {args.out / 'flipstartup'} and {args.out / 'ravenstack'}")


if __name__ == "__main__":
    main()
