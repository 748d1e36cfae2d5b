#!/usr/bin/env bash
# Install Debian's Chromium (and an emoji font, for the page's 👍/👎 buttons and
# the screenshots) for the browser tests, once. Playwright drives this Chromium
# through executable_path, so no test tool ever downloads a browser.
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
if [ ${#missing[@]} -gt 0 ]; then
  echo "browser: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi
echo "browser: $(/usr/bin/chromium --version)"
