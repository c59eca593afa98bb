"""A trainer that records when it started and ended (for the concurrency limit test).

Usage: record.py RECORD_DIR SECONDS. Writes RECORD_DIR/<job id>.json with start and end
Unix times, then exits 0 without an output file.
"""

import json
import os
import sys
import time

record_dir, seconds = sys.argv[1], float(sys.argv[2])
start = time.time()
time.sleep(seconds)
end = time.time()
path = os.path.join(record_dir, os.environ["MLWARDEN_JOB_ID"] + ".json")
with open(path, "w") as fh:
    json.dump({"model": os.environ["MLWARDEN_MODEL"], "start": start, "end": end}, fh)
