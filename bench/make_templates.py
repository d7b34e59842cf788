#!/usr/bin/env python3
"""Turns the sample bodies into wrk request templates: compact JSON with a placeholder that wrk.lua
replaces per request, so that every request is a distinct event.
  make_templates.py SAMPLES_DIR OUT.lua [v2|v1|deal-large]
  v2          the samples as they are, meta.id = @@ID@@ (the default)
  v1          the same objects in the documented v1 shape (guide-for-webhooks.md): whole current and
              previous objects, meta.timestamp_micro = @@NUM@@
  deal-large  v2 deal changes of about 2.5 KB: the deal sample with 14 more custom fields (40-hex keys)
"""
import copy, json, pathlib, random, sys

V1_ACTIONS = {"create": "added", "change": "updated", "delete": "deleted"}


def flatten(obj):
    out = {}
    for k, v in (obj or {}).items():
        if k == "custom_fields" and isinstance(v, dict):
            for ck, cv in v.items():
                out[ck] = cv.get("value") if isinstance(cv, dict) else cv
        else:
            out[k] = v
    return out


def v1_of(doc):
    m = doc["meta"]
    action = V1_ACTIONS.get(m.get("action"), "updated")
    current = flatten(doc.get("data")) if isinstance(doc.get("data"), dict) else None
    previous = dict(current or {})
    previous.update(flatten(doc.get("previous")) if isinstance(doc.get("previous"), dict) else {})
    filters = {"current": [], "previous": []}
    meta = {"v": 1, "action": action, "object": m["entity"], "change_source": m.get("change_source", "app"),
            "id": int(m["entity_id"]) if str(m["entity_id"]).isdigit() else m["entity_id"],
            "company_id": int(m["company_id"]), "user_id": int(m["user_id"]), "host": m.get("host", "company.pipedrive.com"),
            "timestamp": 1700000000, "timestamp_micro": "@@NUM@@", "permitted_user_ids": [int(m["user_id"])],
            "trans_pending": False, "is_bulk_update": False, "pipedrive_service_name": False,
            "matches_filters": filters, "webhook_id": int(m["webhook_id"])}
    return {"v": 1, "matches_filters": filters, "meta": meta, "retry": 0,
            "current": None if action == "deleted" else current,
            "previous": None if action == "added" else previous, "event": action + "." + m["entity"]}


def large_deals(deal, n=8):
    rng = random.Random(5)
    out = []
    for i in range(n):
        doc = copy.deepcopy(deal)
        cf = doc["data"].setdefault("custom_fields", {})
        for j in range(14):
            key = "%040x" % rng.getrandbits(160)
            kind = j % 4
            if kind == 0:
                cf[key] = {"type": "varchar", "value": " ".join(rng.choice(["Enterprise", "renewal", "Q3", "priority", "EMEA", "pilot", "legal review"]) for _ in range(3))}
            elif kind == 1:
                cf[key] = {"type": "double", "value": round(rng.uniform(0, 100000), 2)}
            elif kind == 2:
                cf[key] = {"type": "enum", "id": rng.randint(1, 400)}
            else:
                cf[key] = {"type": "date", "value": "2026-%02d-%02d" % (rng.randint(1, 12), rng.randint(1, 28))}
        doc["previous"] = {"custom_fields": {k: None for k in list(cf)[:2]}, "value": rng.randint(1, 9999)}
        doc["data"]["title"] = "Deal %d for %s" % (i, rng.choice(["Acme", "Globex", "Initech", "Umbrella"]))
        doc["data"]["value"] = rng.randint(100, 99999)
        doc["meta"]["id"] = "@@ID@@"
        out.append(doc)
    return out


def main():
    samples = pathlib.Path(sys.argv[1])
    shape = sys.argv[3] if len(sys.argv) > 3 else "v2"
    docs = [json.loads(p.read_text()) for p in sorted(samples.glob("*.json"))]
    if shape == "v2":
        for d in docs:
            d["meta"]["id"] = "@@ID@@"
        bodies = docs
    elif shape == "v1":
        bodies = [v1_of(d) for d in docs]
    elif shape == "deal-large":
        bodies = large_deals(next(d for d in docs if d["meta"]["entity"] == "deal" and d["meta"]["action"] == "change"))
    else:
        sys.exit("unknown shape " + shape)
    out = [json.dumps(b, separators=(",", ":")).replace('"@@NUM@@"', "@@NUM@@") for b in bodies]
    lua = "return {\n" + ",\n".join("  " + json.dumps(b) for b in out) + "\n}\n"
    pathlib.Path(sys.argv[2]).write_text(lua)


if __name__ == "__main__":
    main()
