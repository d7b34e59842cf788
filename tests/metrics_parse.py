#!/usr/bin/env python3
"""Parses a Prometheus text exposition file with the official Python client's parser (strict: a
malformed line raises) and prints every sample as one JSON object: "name{a="x",b="y"}" -> value,
labels sorted. Also checks that each family has a TYPE and a HELP. Exit 1 on any problem."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = open(sys.argv[1], encoding="utf-8").read()
    samples = {}
    for family in text_string_to_metric_families(text):
        if family.type == "unknown":
            print(f"{family.name}: no TYPE line", file=sys.stderr)
            return 1
        if not family.documentation:
            print(f"{family.name}: no HELP line", file=sys.stderr)
            return 1
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    json.dump(samples, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
