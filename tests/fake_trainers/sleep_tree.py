"""A trainer that starts a grandchild and sleeps (for the timeout test).

Usage: sleep_tree.py PID_FILE. Writes "child_pid grandchild_pid" to PID_FILE.
"""

import os
import subprocess
import sys
import time

grandchild = subprocess.Popen(["sleep", "300"])
with open(sys.argv[1] + ".tmp", "w") as fh:
    fh.write(f"{os.getpid()} {grandchild.pid}\n")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
print("training forever", flush=True)
time.sleep(300)
