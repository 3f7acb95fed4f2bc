#!/usr/bin/env python3
"""Sums each column of the first N rows of a CSV file into results/sums.txt."""
import argparse
import csv

parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, required=True)
parser.add_argument("file")
args = parser.parse_args()

with open(args.file, newline="") as f:
    reader = csv.reader(f)
    header = next(reader)
    sums = [0.0] * len(header)
    for i, row in enumerate(reader):
        if i >= args.rows:
            break
        for j, value in enumerate(row):
            sums[j] += float(value)

with open("results/sums.txt", "w") as out:
    for name, total in zip(header, sums):
        out.write(f"{name}={total:g}\n")
print(f"summed {args.rows} rows of {args.file}")
