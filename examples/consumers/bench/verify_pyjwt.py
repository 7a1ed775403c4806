"""Verify cost in PyJWT. Run by `.ci/consumers PORTCULLIS --bench` in the fastapi-pyjwt
virtualenv. Prints one JSON line per algorithm: the median, over `runs` runs, of
microseconds per verification with the key already resolved (signature plus claims)."""

import json
import statistics
import sys
import time

import jwt

TARGET_S = 0.3  # each run lasts about 0.3 s


def measure(verify_once, runs):
    t0, warm = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.05 or warm < 20:
        verify_once()
        warm += 1
    per = (time.perf_counter() - t0) / warm
    n = max(100, int(TARGET_S / per) + 1)
    results = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(n):
            verify_once()
        results.append((time.perf_counter() - t0) / n * 1e6)
    return {"n": n, "runs_us": [round(v, 1) for v in results], "median_us": statistics.median(results)}


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    runs = spec.get("runs", 5)
    for alg, t in spec["tokens"].items():
        key = jwt.PyJWK(t["jwk"], algorithm=alg).key

        def verify_once():
            decoded = jwt.decode_complete(
                t["token"],
                key,
                algorithms=[alg],
                issuer=t["issuer"],
                audience=t["audience"],
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
            if decoded["header"].get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
                raise ValueError("typ")

        verify_once()
        print(json.dumps({"library": "python PyJWT", "alg": alg, **measure(verify_once, runs)}), flush=True)


if __name__ == "__main__":
    main()
