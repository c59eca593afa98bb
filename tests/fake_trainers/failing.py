"""A trainer that always fails (for the retry test).

Usage: failing.py ATTEMPTS_FILE. Appends the attempt number to ATTEMPTS_FILE, prints
a traceback-like tail and exits 3.
"""

import os
import sys

with open(sys.argv[1], "a") as fh:
    fh.write(os.environ["MLWARDEN_ATTEMPT"] + "\n")
print("loading data: 120 rows")
print("Traceback (most recent call last):", file=sys.stderr)
print("ValueError: boom: the training data has NaN labels", file=sys.stderr)
sys.exit(3)
