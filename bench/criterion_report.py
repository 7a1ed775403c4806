#!/usr/bin/env python3
"""Turn criterion results into the tables of docs/BENCHMARKS.md.

Reads every target/criterion/<group>/<function>/new/estimates.json written by
`cargo bench -p portcullis --bench jwt` and prints, per algorithm, the medians of
portcullis, the bare aws-lc-rs primitive and jsonwebtoken, with the ratios. All
numbers come from one run, so the ratios compare like with like on a noisy machine.
"""
import json
import os
import sys

ROOT = os.environ.get("CRITERION_DIR", os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "criterion"))
ALGS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA"]


def median_ns(group, function):
    path = os.path.join(ROOT, group, function, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"]
    except FileNotFoundError:
        return None


def fmt_time(ns):
    if ns is None:
        return "n/a"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def ratio(a, b):
    return "n/a" if a is None or b is None else f"{a / b:.3f}"


def table(op):
    print(f"\n### {op}\n")
    print("| alg | portcullis | aws-lc-rs raw | jsonwebtoken | portcullis / raw | portcullis / jsonwebtoken |")
    print("|---|---:|---:|---:|---:|---:|")
    for alg in ALGS:
        ours = median_ns(f"{op}-{alg}", "portcullis")
        raw = median_ns(f"{op}-{alg}", "aws-lc-rs")
        peer = median_ns(f"{op}-{alg}", "jsonwebtoken")
        print(f"| {alg} | {fmt_time(ours)} | {fmt_time(raw)} | {fmt_time(peer)} | {ratio(ours, raw)} | {ratio(ours, peer)} |")


def main():
    if not os.path.isdir(ROOT):
        sys.exit(f"no criterion results in {ROOT}: run cargo bench -p portcullis --bench jwt first")
    table("verify")
    table("sign")
    print("\n### verify, cached (repeat of an already-verified token)\n")
    print("| alg | portcullis cached | portcullis uncached | cached / uncached |")
    print("|---|---:|---:|---:|")
    for alg in ["HS256", "EdDSA", "ES256", "RS256"]:
        cached = median_ns(f"verify-cached-{alg}", "portcullis")
        full = median_ns(f"verify-{alg}", "portcullis")
        print(f"| {alg} | {fmt_time(cached)} | {fmt_time(full)} | {ratio(cached, full)} |")


if __name__ == "__main__":
    main()
