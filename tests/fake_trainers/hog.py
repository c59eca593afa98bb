"""A trainer that grabs memory or burns CPU (for the resource-limit tests).

Usage: hog.py memory MIB | hog.py cpu SECONDS. ``memory`` allocates and touches MIB
mebibytes, prints "allocated", then exits 0 without an output file; ``cpu`` spins for
SECONDS of CPU time, then exits 0 likewise (a limit should stop either first).
"""

import sys
import time

what, amount = sys.argv[1], float(sys.argv[2])
print(f"hog: {what} {amount:g}", flush=True)
if what == "memory":
    block = bytearray(int(amount * 1024 * 1024))
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    print("allocated", flush=True)
else:
    end = time.process_time() + amount
    while time.process_time() < end:
        pass
    print("spun", flush=True)
