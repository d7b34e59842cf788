#!/usr/bin/env python3
"""Turns the sample bodies into wrk request templates: compact JSON with meta.id replaced by a
placeholder, so every request is a distinct event (a unique event id per request)."""
import json, pathlib, sys

out = []
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    doc = json.loads(p.read_text())
    doc["meta"]["id"] = "@@ID@@"
    out.append(json.dumps(doc, separators=(",", ":")))
lua = "return {\n" + ",\n".join("  " + json.dumps(b) for b in out) + "\n}\n"
pathlib.Path(sys.argv[2]).write_text(lua)
