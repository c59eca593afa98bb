"""A trainer that waits for the test (for the ``training`` status tests).

Usage: gated.py READY GO MODEL_URI EXIT_CODE. Creates READY, waits until GO exists,
writes ``{"model_uri": MODEL_URI}`` to MLWARDEN_OUTPUT and exits EXIT_CODE.
"""

import json
import os
import sys
import time
from pathlib import Path

ready, go, uri, code = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
Path(ready).write_text(os.environ["MLWARDEN_JOB_ID"])
while not go.exists():
    time.sleep(0.05)
with open(os.environ["MLWARDEN_OUTPUT"], "w") as fh:
    json.dump({"model_uri": uri, "metrics": {"mse": 0.1}}, fh)
print("gated trainer done", flush=True)
sys.exit(code)
