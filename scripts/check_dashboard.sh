#!/usr/bin/env bash
# Render the sample report's dashboard in headless Chromium and save a full-page screenshot.
# Needs Debian's chromium (apt-get install chromium). Usage: scripts/check_dashboard.sh [OUT_PNG]
set -euo pipefail
cd "$(dirname "$0")/.."
png="${1:-screenshots/dashboard.png}"  # outside report/: the report folder holds only what the report wrote
csmetrics report sample_data --out report --quiet
mkdir -p "$(dirname "$png")"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$(mktemp -d)" --hide-scrollbars --window-size=1400,3600 \
  --screenshot="$png" "file://$PWD/report/index.html" 2>/dev/null
echo "screenshot: $png"
