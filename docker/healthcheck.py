"""Container health check: exit 0 only while the service answers 200 on /health/ready.

Uses the standard library alone, so the image needs no curl.
"""

import os
import sys
import urllib.request

URL = f"http://127.0.0.1:{os.environ.get('SERVE_PORT', '8000')}/health/ready"

try:
    with urllib.request.urlopen(URL, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:  # URLError and HTTPError (a 503 while loading or draining) are OSErrors
    sys.stderr.write(f"{URL}: {exc}\n")
    sys.exit(1)
