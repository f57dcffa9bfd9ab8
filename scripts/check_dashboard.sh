#!/usr/bin/env bash
# Render dashboards in headless Chromium and save full-page screenshots: the sample report at
# 1400 and 800 px wide, and (when ../shared/data is there) flipStartup and RavenStack at 1400 px.
# Needs Debian's chromium (apt-get install chromium). Usage: scripts/check_dashboard.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
shots="${1:-screenshots}"  # outside report/: the report folder holds only what the report wrote
mkdir -p "$shots"
shoot() {  # url width height png
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d)" --hide-scrollbars --window-size="$2,$3" \
    --screenshot="$4" "$1" 2>/dev/null
  echo "screenshot: $4"
}
csmetrics report sample_data --out report --quiet
shoot "file://$PWD/report/index.html" 1400 9000 "$shots/dashboard.png"
shoot "file://$PWD/report/index.html" 800 14000 "$shots/dashboard-800.png"
if [ -d ../shared/data ]; then
  rm -rf "$shots/reports"
  python scripts/shared_reports.py "$shots/reports"
  shoot "file://$PWD/$shots/reports/flipstartup/index.html" 1400 7000 "$shots/flipstartup.png"
  shoot "file://$PWD/$shots/reports/ravenstack/index.html" 1400 9000 "$shots/ravenstack.png"
fi
