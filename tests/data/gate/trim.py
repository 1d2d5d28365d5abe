"""Trim a pytest-benchmark JSON file to what `python -m verify.compare` reads, to keep the
recorded evidence small: python tests/data/gate/trim.py IN.json OUT.json"""
import json
import sys

STATS = ("median", "q1", "q3", "rounds", "data")
EXTRA = ("variant", "baseline", "time_vs_baseline", "model", "batch", "threads")


def _round(value):
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def trim(data: dict) -> dict:
    benchmarks = []
    for b in data["benchmarks"]:
        extra = {k: _round(v) for k, v in b.get("extra_info", {}).items()
                 if k in EXTRA or k.endswith("bytes")}
        benchmarks.append({"group": b.get("group"), "name": b["name"], "fullname": b["fullname"],
                           "stats": {k: _round(b["stats"][k]) for k in STATS if k in b["stats"]},
                           "extra_info": extra})
    machine = data.get("machine_info", {})
    return {"machine_info": {"node": machine.get("node"), "torch": machine.get("torch")},
            "commit_info": {k: data.get("commit_info", {}).get(k) for k in ("id", "dirty", "branch")},
            "datetime": data.get("datetime"), "version": data.get("version"),
            "benchmarks": benchmarks}


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as fh:
        trimmed = trim(json.load(fh))
    with open(sys.argv[2], "w", encoding="utf-8") as fh:
        json.dump(trimmed, fh, indent=0, separators=(",", ":"))
        fh.write("\n")
