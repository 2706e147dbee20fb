#!/usr/bin/env python3
"""Instructions a group of functions cost, read from a callgrind profile.

    callgrind_entries.py PROFILE NAME=SUBSTRING [NAME=SUBSTRING ...]

A group is every function whose (demangled) name contains SUBSTRING. Its cost is the
inclusive cost of the calls *into* the group from functions outside it (so nested group
functions are not counted twice), plus the self cost of group functions no recorded call
reached (a profile zeroed in the middle of a call). A group should be entry points that are
not re-entered through functions outside it (the trait methods a runtime calls, say, not
every function of a module: a module's Serialize impl called back by serde_json would be
counted inside serde_json's call too). Prints one line per group:

    NAME entries=CALLS ir=INSTRUCTIONS self=SELF_INSTRUCTIONS_OF_THE_GROUP

and first `total ir=N` (the profile's summary: every instruction of every thread).
Reads profiles written with or without --compress-strings / --compress-pos.
"""

import re
import sys

NAME_REF = re.compile(r"^\((\d+)\)(?: (.*))?$")


def parse(path):
    names = {}

    def name(value):
        m = NAME_REF.match(value)
        if not m:
            return value
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), value)

    self_cost = {}
    calls = []  # (caller, callee, count, inclusive)
    total = None
    fn = None
    cfn = None
    pending_call = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            head = line[0]
            if head.isdigit() or head in "+-*":
                cost = line.split()
                value = int(cost[1]) if len(cost) > 1 else 0
                if pending_call is not None:
                    calls.append((fn, cfn, pending_call, value))
                    pending_call = None
                else:
                    self_cost[fn] = self_cost.get(fn, 0) + value
                continue
            key, _, value = line.partition("=")
            if key == "fn":
                fn = name(value)
            elif key == "cfn":
                cfn = name(value)
            elif key == "calls":
                pending_call = int(value.split()[0])
            elif line.startswith(("summary:", "totals:")) and total is None:
                total = int(line.split()[1])
    return total or 0, self_cost, calls


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    total, self_cost, calls = parse(sys.argv[1])
    print(f"total ir={total}")
    for spec in sys.argv[2:]:
        label, _, pattern = spec.partition("=")
        inside = lambda f: f is not None and pattern in f  # noqa: E731
        entries = ir = 0
        reached = set()
        for caller, callee, count, inclusive in calls:
            if inside(callee):
                reached.add(callee)
                if not inside(caller):
                    entries += count
                    ir += inclusive
        own = sum(c for f, c in self_cost.items() if inside(f))
        # Group functions that ran but were entered before the counters were zeroed.
        ir += sum(c for f, c in self_cost.items() if inside(f) and f not in reached)
        print(f"{label} entries={entries} ir={ir} self={own}")


if __name__ == "__main__":
    main()
