#!/usr/bin/env python3
"""Trains the zstd dictionary pipehook compresses stored webhook bodies with
(src/store/dictionary/pipedrive-<id>.zdict, compiled into the binary).

The training set: every v2 sample of tests/data/samples, each rendered many times with its values
varied (ids, names, amounts, times, uuids, custom-field keys, which fields changed), plus v1 bodies
built from the same objects in the documented v1 shape (guide-for-webhooks.md: meta.object,
current and previous as whole objects, matches_filters, retry). tests/data/samples-2026 is left
out, so that it can measure the dictionary on payloads it has never seen.

Deterministic (a fixed seed): running it again gives the same dictionary. A new dictionary must
get a new id (--id): rows keep the id of the dictionary they were compressed with, and every id
ever shipped stays readable (src/store/body.cpp).

  scripts/train-dictionary.py --id 1 --out src/store/dictionary/pipedrive-1.zdict
"""
import argparse, copy, json, pathlib, random, string, subprocess, sys, tempfile, uuid

WORDS = ("acme northwind globex initech umbrella stark wayne wonka tyrell cyberdyne soylent hooli "
         "pied piper vandelay dunder mifflin sterling cooper draper pryce monarch oscorp "
         "call meeting lunch demo follow-up renewal contract invoice proposal onboarding review "
         "tallinn berlin london paris new york tokyo sydney madrid lisbon oslo riga vilnius").split()


def rand_word(rng):
    return rng.choice(WORDS)


def vary(value, key, rng):
    """A value of the same kind and shape as `value`, as another record would carry it."""
    if isinstance(value, bool) or value is None:
        return rng.choice([value, value, None if value is not None else False])
    if isinstance(value, int):
        if key.endswith("_id") or key == "id":
            return rng.choice([rng.randint(1, 99), rng.randint(100, 99999), rng.randint(1000000, 99999999)])
        return rng.randint(0, 10 ** rng.randint(1, 6))
    if isinstance(value, float):
        return round(rng.uniform(0, 100000), rng.randint(0, 2))
    if isinstance(value, str):
        if len(value) == 36 and value.count("-") == 4:
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if len(value) == 40 and all(c in string.hexdigits for c in value):
            return "%040x" % rng.getrandbits(160)
        if len(value) >= 20 and value[4:5] == "-" and "T" in value:
            return "%04d-%02d-%02dT%02d:%02d:%02d%s" % (
                rng.randint(2019, 2026), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                rng.randint(0, 59), rng.randint(0, 59), value[19:] if len(value) > 19 else "Z")
        if len(value) == 10 and value[4:5] == "-":
            return "%04d-%02d-%02d" % (rng.randint(2019, 2026), rng.randint(1, 12), rng.randint(1, 28))
        if value.isdigit():
            return str(vary(int(value), key, rng))
        if " " in value or len(value) > 12:
            return " ".join(rand_word(rng).capitalize() for _ in range(rng.randint(1, 4)))
        return value  # enumerations: status, type, currency, ...
    if isinstance(value, list):
        return [vary(v, key, rng) for v in value[: rng.randint(0, len(value) + 1)]] or value[:0]
    if isinstance(value, dict):
        return {k: vary(v, k, rng) for k, v in value.items()}
    return value


def v2_variant(doc, rng):
    out = copy.deepcopy(doc)
    if isinstance(out.get("data"), dict):
        out["data"] = vary(out["data"], "data", rng)
    if isinstance(out.get("previous"), dict) and isinstance(out.get("data"), dict):
        changed = rng.sample(sorted(out["data"].keys()), k=min(len(out["data"]), rng.randint(1, 3)))
        out["previous"] = {k: vary(out["data"][k], k, rng) for k in changed}
    m = out["meta"]
    m["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    m["correlation_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    for k in ("company_id", "user_id", "webhook_id", "webhook_owner_id"):
        if k in m:
            m[k] = str(rng.randint(1000000, 99999999))
    if "entity_id" in m:
        m["entity_id"] = str(rng.randint(1, 999999))
    if isinstance(m.get("timestamp"), str):
        m["timestamp"] = vary(m["timestamp"], "timestamp", rng)
    m["attempt"] = rng.choice([1, 1, 1, 2, 3])
    m["change_source"] = rng.choice(["app", "app", "api", "mobile"])
    return out


V1_ACTIONS = {"create": "added", "change": "updated", "delete": "deleted"}


def v1_variant(doc, rng):
    """The documented v1 shape around the same object: whole current and previous objects."""
    v2 = v2_variant(doc, rng)
    m2 = v2["meta"]
    action = V1_ACTIONS.get(m2.get("action"), "updated")
    obj = v2.get("data") if isinstance(v2.get("data"), dict) else {"id": rng.randint(1, 99999)}
    current = dict(obj)
    for k, v in list(current.items()):  # v1 objects are flat: custom fields as top-level hash keys
        if k == "custom_fields" and isinstance(v, dict):
            del current[k]
            for ck, cv in v.items():
                current[ck] = cv.get("value") if isinstance(cv, dict) else cv
    previous = dict(current)
    for k in rng.sample(sorted(previous.keys()), k=min(len(previous), rng.randint(1, 3))):
        previous[k] = vary(previous[k], k, rng)
    ts = rng.randint(1_550_000_000, 1_790_000_000)
    micro = ts * 1_000_000 + rng.randint(0, 999_999)
    oid = current.get("id", rng.randint(1, 99999))
    filters = {"current": [rng.randint(1, 50)] if rng.random() < 0.3 else [], "previous": []}
    meta = {
        "v": 1, "action": action, "object": m2.get("entity", "deal"), "change_source": m2["change_source"],
        "id": oid, "company_id": int(m2.get("company_id", "1")), "user_id": int(m2.get("user_id", "1")),
        "host": rng.choice(["acme.pipedrive.com", "northwind-eu.pipedrive.com", "company.pipedrive.com"]),
        "timestamp": ts, "timestamp_micro": micro, "permitted_user_ids": [int(m2.get("user_id", "1"))],
        "trans_pending": False, "is_bulk_update": rng.random() < 0.05, "pipedrive_service_name": False,
        "matches_filters": filters, "webhook_id": int(m2.get("webhook_id", "1")),
    }
    return {
        "v": 1, "matches_filters": filters, "meta": meta, "retry": rng.choice([0, 0, 0, 1]),
        "current": None if action == "deleted" else current,
        "previous": None if action == "added" else previous,
        "event": action + "." + meta["object"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--id", type=int, required=True, help="the dictionary id stored with each row")
    ap.add_argument("--out", required=True)
    ap.add_argument("--samples", default="tests/data/samples")
    ap.add_argument("--per-sample", type=int, default=400)
    ap.add_argument("--size", type=int, default=65536, help="dictionary size in bytes")
    args = ap.parse_args()
    rng = random.Random(20261202)
    docs = [json.loads(p.read_text()) for p in sorted(pathlib.Path(args.samples).glob("*.json"))]
    if not docs:
        sys.exit(f"no samples in {args.samples}")
    with tempfile.TemporaryDirectory() as tmp:
        n = 0
        for doc in docs:
            for i in range(args.per_sample):
                body = v2_variant(doc, rng) if i % 2 == 0 else v1_variant(doc, rng)
                # Pipedrive sends compact JSON; a few pretty-printed bodies (relays, replays) too.
                text = json.dumps(body, indent=4 if i % 25 == 0 else None, separators=None if i % 25 == 0 else (",", ":"))
                (pathlib.Path(tmp) / f"{n:06d}.json").write_text(text)
                n += 1
        subprocess.run(["zstd", "--train", "-q", "-r", tmp, "-o", args.out, f"--maxdict={args.size}",
                        f"--dictID={args.id}", "-3"], check=True)
    print(f"{args.out}: trained on {n} bodies from {len(docs)} samples")


if __name__ == "__main__":
    main()
