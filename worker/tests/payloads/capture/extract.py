"""Split a captured envelope into its items; print headers and write event items."""
import json, sys

def items(data):
    nl = data.index(b"\n")
    env_header = json.loads(data[:nl]); pos = nl + 1
    out = []
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0: break
        line = data[pos:nl]
        if not line.strip(): pos = nl + 1; continue
        h = json.loads(line); pos = nl + 1
        if "length" in h:
            payload = data[pos:pos + h["length"]]; pos += h["length"] + 1
        else:
            nl = data.find(b"\n", pos)
            if nl < 0: nl = len(data)
            payload = data[pos:nl]; pos = nl + 1
        out.append((h, payload))
    return env_header, out

if __name__ == "__main__":
    for path in sys.argv[1:]:
        eh, its = items(open(path, "rb").read())
        print(path, json.dumps(eh))
        for h, p in its:
            print("  ", json.dumps(h), len(p))
