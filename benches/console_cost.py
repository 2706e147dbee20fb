#!/usr/bin/env python3
"""The console's cost from the rows of benches/console_instructions.sh.

    console_cost.py ROWS INTERVAL_MS

Rows (tab-separated; IR = instructions, CALLS = calls into the group, see analyse() there):
    loaded FIGURE MODE REP DONE TICKS TOTAL CONSOLE_IR CONSOLE_CALLS HUB_IR HUB_CALLS CLOCK_IR CLOCK_CALLS WORK_IR WORK_CALLS
    idle   -      MODE REP 0    TICKS TOTAL ... (the same)
    native FIGURE none REP RATE -     CYCLES_PER_S

The model (the script's header says why): the console costs a core
  per duty cycle   its poll at rest: (CONSOLE_IR - WORK_IR) / CONSOLE_CALLS, with and without
                   a viewer (the difference is what a viewer costs between ticks);
  per tick         its poll past rest (WORK_IR / TICKS: the snapshot, the encoding, the DATA
                   frames, the windows coming back) plus what the tick costs outside its code
                   (http, tcp, a core woken for it), from the idle runs: the whole process's
                   extra instructions with a viewer, less the console's own, per tick.
At the native rate of a figure, one viewer's share of the server's instructions is
  (per tick x ticks/s + viewer's extra per cycle x cycles/s) / (instructions per request x requests/s)
and nobody watching vs no console is (per cycle at rest + the core's clock read after the poll)
x cycles/s over the same denominator. Ranges take every repetition and every native round.
"""

import statistics
import sys


def per(a, b):
    return a / b if b else 0.0


def spread(values, fmt):
    values = sorted(values)
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(values[0])}..{fmt.format(values[-1])})"


def pct(values):
    return f"{statistics.median(values) * 100:.3f}% ({min(values) * 100:.3f}..{max(values) * 100:.3f}%)"


def read(rows):
    loaded, idle, native = {}, {}, {}
    for line in open(rows):
        f = line.rstrip("\n").split("\t")
        if len(f) < 7:
            continue
        kind, figure, mode, rep = f[0], f[1], f[2], int(f[3])
        if kind == "native":
            native.setdefault(figure, []).append((float(f[4]), float(f[6])))
            continue
        values = [int(x) if x else 0 for x in f[6:15]] + [0] * 9
        total, cir, ccalls, hir, hcalls, kir, kcalls, wir, wcalls = values[:9]
        rec = dict(done=float(f[4]), ticks=int(f[5]), total=total, cir=cir, ccalls=ccalls,
                   hir=hir, hcalls=hcalls, kir=kir, kcalls=kcalls, wir=wir, wcalls=wcalls)
        if kind == "loaded":
            loaded.setdefault(figure, {}).setdefault(mode, {})[rep] = rec
        else:
            idle.setdefault(mode, {})[rep] = rec
    return loaded, idle, native


def at_rest(r):
    """Instructions per console poll that stopped at its look at rest."""
    return per(r["cir"] - r["wir"], r["ccalls"] - r["wcalls"])


def main():
    rows, interval_ms = sys.argv[1], float(sys.argv[2])
    ticks_per_s = 1000.0 / interval_ms
    loaded, idle, native = read(rows)

    outside = {}
    print("idle (callgrind, no load): one viewer vs none")
    for rep in sorted(set(idle.get("open", {})) & set(idle.get("none", {}))):
        o, n = idle["open"][rep], idle["none"][rep]
        if o["ticks"] <= 0:
            print(f"  #{rep}: the viewer received no tick in the window")
            continue
        diff = (o["total"] - n["total"]) / o["ticks"]
        own = (o["cir"] - n["cir"]) / o["ticks"]
        outside[rep] = max(diff - own, 0.0)
        print(f"  #{rep}: process {o['total']:,} vs {n['total']:,} instructions, {o['ticks']} ticks: "
              f"{diff:,.0f} per tick, of which the console's code {own:,.0f} (hub {per(o['hir'], o['ticks']):,.0f}) "
              f"and outside it {diff - own:,.0f} (http and tcp sending it; the core woken for it, "
              f"its spin cycles before it parks again)")

    verdicts = []
    for figure in sorted(loaded):
        modes = loaded[figure]
        unit = "request" if figure == "http" else "message"
        print(f"\n{figure} (callgrind under load; per {unit})")
        for mode in ("absent", "none", "open"):
            for rep, r in sorted(modes.get(mode, {}).items()):
                print(f"  {mode:<6} #{rep}: {per(r['total'], r['done']):,.0f} instructions per {unit} "
                      f"({r['total']:,} / {r['done']:,.0f}); console {r['cir']:,} in {r['ccalls']:,} polls "
                      f"({at_rest(r):.1f} per poll at rest), past rest {r['wir']:,} in {r['wcalls']} polls, "
                      f"hub {r['hir']:,} in {r['hcalls']} calls, ticks {r['ticks'] if mode == 'open' else '-'}")
        none, opened = modes.get("none", {}), modes.get("open", {})
        rates = [n[0] for n in native.get(figure, [])]
        cycles = [n[1] for n in native.get(figure, [])]
        if not (none and opened and rates):
            print("  (not enough rows: need none and open under load, and native rounds)")
            continue
        c_req = [per(r["total"], r["done"]) for r in none.values()]
        rest_none = [at_rest(r) for r in none.values()]
        rest_open = [at_rest(r) for r in opened.values()]
        clock = [per(r["kir"], r["kcalls"]) for r in none.values() if r["kcalls"]] or [0.0]
        fallback = max(outside.values(), default=0.0)
        i_tick = [per(r["wir"], r["ticks"]) + outside.get(rep, fallback)
                  for rep, r in sorted(opened.items()) if r["ticks"] > 0]
        viewer_cycle = [max(o - n, 0.0) for o in rest_open for n in rest_none]
        print(f"  nobody watching: the console's poll went past rest {sum(r['wcalls'] for r in none.values())} "
              f"times and called the hub {sum(r['hcalls'] for r in none.values())} times "
              f"({sum(r['hir'] for r in none.values())} instructions): no snapshot, no encoding")
        print(f"  per duty cycle at rest: {spread(rest_none, '{:.1f}')} instructions nobody watching, "
              f"{spread(rest_open, '{:.1f}')} with a viewer between ticks; the core's clock read after "
              f"each poll {spread(clock, '{:.0f}')} (a vDSO call natively, a system call under valgrind)")
        print(f"  per tick: {spread([per(r['wir'], r['ticks']) for r in opened.values() if r['ticks']], '{:,.0f}')} "
              f"in the console's poll (hub {spread([per(r['hir'], r['ticks']) for r in opened.values() if r['ticks']], '{:,.0f}')}) "
              f"+ {spread(list(outside.values()), '{:,.0f}')} outside it (idle runs) = {spread(i_tick, '{:,.0f}')}")
        print(f"  native ({len(rates)} rounds, nobody watching): {spread(rates, '{:,.0f}')} {unit}s/s, "
              f"{spread(cycles, '{:,.0f}')} duty cycles/s")
        share = [(t * ticks_per_s + v * cyc) / (c * rate)
                 for t in i_tick for v in viewer_cycle for c in c_req for rate, cyc in native[figure]]
        print(f"  one viewer: {pct(share)} of the server's instructions "
              f"(per {unit}: {spread(c_req, '{:,.0f}')}): predicted open/none "
              f"{1 / (1 + statistics.median(share)):.5f} ({1 / (1 + max(share)):.5f}..{1 / (1 + min(share)):.5f})")
        absent = [(k + statistics.median(clock)) * cyc / (c * rate)
                  for k in rest_none for c in c_req for rate, cyc in native[figure]]
        print(f"  nobody watching vs no console: {pct(absent)} of the server's instructions")
        if "absent" in modes:
            a = [per(r["total"], r["done"]) for r in modes["absent"].values()]
            o = [per(r["total"], r["done"]) for r in opened.values()]
            print(f"  (whole-process instructions per {unit} under callgrind, which batching moves run to run: "
                  f"absent {spread(a, '{:,.0f}')}, none {spread(c_req, '{:,.0f}')}, open {spread(o, '{:,.0f}')})")
        verdicts.append((figure, max(share), max(absent)))
    print()
    for figure, hi, absent_hi in verdicts:
        word = "within" if hi < 0.02 else "NOT within"
        print(f"{figure}: one open console costs at most {hi * 100:.3f}% of the server's instructions "
              f"({word} 2%); nobody watching at most {absent_hi * 100:.3f}%")


if __name__ == "__main__":
    main()
