"""Count the primes below a limit with a sieve and write the result to the job's output folder.

Run as a job command: `python3 -m examples.primes --limit 5000000`. It reads the output folder
from `CAC_OUTPUT_DIR`, which every provider sets, and falls back to `./output`.
"""

import argparse
import hashlib
import json
import os
import time
from pathlib import Path


def sieve(limit: int) -> bytearray:
    """Return a table where entry n is 1 when n is prime, for 0 <= n < limit."""
    table = bytearray([1]) * limit
    table[0:2] = b"\x00\x00"[: min(2, limit)]
    for n in range(2, int(limit**0.5) + 1):
        if table[n]:
            table[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=5_000_000, help="count primes below this number")
    args = parser.parse_args()

    started = time.perf_counter()
    table = sieve(args.limit)
    primes = [n for n in range(len(table)) if table[n]]
    elapsed = time.perf_counter() - started

    result = {
        "limit": args.limit,
        "count": len(primes),
        "largest": primes[-1] if primes else None,
        "sha256": hashlib.sha256(",".join(map(str, primes)).encode()).hexdigest(),
        "seconds": round(elapsed, 3),
    }
    output_dir = Path(os.environ.get("CAC_OUTPUT_DIR", "output"))
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['count']} primes below {args.limit}, largest {result['largest']}")


if __name__ == "__main__":
    main()
