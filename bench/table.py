#!/usr/bin/env python3
"""Prints bench/run's table from the results directory it filled.

    table.py RESULTS_DIR

Every figure comes from a file written in the same run; a phase that was
skipped or failed shows n/a. Nothing is judged: the target column is the
target from DESIGN.md, printed beside the figure.
"""
import json
import os
import sys

NA = "n/a"


def load(d, name):
    path = os.path.join(d, name)
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if name.endswith(".out"):
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def num(v, digits=1):
    if v is None:
        return NA
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) >= 1000):
        return f"{int(v):,}"
    return f"{v:,.{digits}f}"


def ratio(a, b, fmt="{:.2f}x"):
    if a is None or b is None or b == 0:
        return NA
    return fmt.format(a / b)


def cpu(r):
    return None if not r else r["user_seconds"] + r["sys_seconds"]


def mib(r):
    return None if not r else r["max_rss_kib"] / 1024.0


def wall(r):
    return None if not r else r["wall_seconds"]


def calls(sim, *ops):
    if not isinstance(sim, dict):
        return None
    return sum(sim.get("calls", {}).get(op, {}).get("calls", 0) for op in ops)


def throttled(sim):
    if not isinstance(sim, dict):
        return None
    return sum(v.get("throttled", 0) for v in sim.get("calls", {}).values())


class Results:
    def __init__(self, d):
        self.d = d
        self.run = load(d, "run.json") or {}
        for name in ("bound", "baseline", "sync", "resync", "sweep", "resweep"):
            setattr(self, name, load(d, name + ".rusage.json"))
            setattr(self, name + "_rows", (load(d, name + ".rows.json") or {}).get("rows_written"))
            setattr(self, name + "_sim", load(d, name + ".sim.json"))
        self.bound_out = load(d, "bound.json")
        self.boto_out = load(d, "baseline.json")
        self.sync_jobs = load(d, "sync.out") or []
        self.resync_jobs = load(d, "resync.out") or []
        self.sweep_jobs = load(d, "sweep.jobs.json")
        self.sweep_report = load(d, "sweep.report.json")
        self.push = load(d, "push.json")
        self.idle = load(d, "idle.json")
        self.sim_hwm = load(d, "sim.hwm_kib")
        self.load_end = load(d, "load_end")

    def timed_out(self, name):
        r = getattr(self, name)
        return bool(r and r.get("timed_out"))

    def failed(self, name):
        r = getattr(self, name)
        return bool(r and r.get("exit"))


def label_wall(res, name):
    r = getattr(res, name)
    if r is None:
        return NA
    text = num(wall(r), 2)
    if res.timed_out(name):
        return f">{text} (timeout)"
    return text + (" (failed)" if res.failed(name) else "")


def sync_rows(res):
    rows = []
    if res.sync is None:
        return rows
    b = res.bound_out if isinstance(res.bound_out, dict) else None
    bound = b and b["fetch_seconds"] + b["copy_seconds"]
    boto = res.boto_out["wall_seconds"] if isinstance(res.boto_out, dict) else None
    s = wall(res.sync)
    bound_txt = (f"bound {num(bound, 2)} (fetch {num(b['fetch_seconds'], 2)}"
                 f" + COPY {num(b['copy_seconds'], 2)})") if b else NA
    rows.append(("full sync: wall s", label_wall(res, "sync"), bound_txt,
                 ratio(s, bound) + " bound" if s and bound else NA, "<= 1.5x bound"))
    rows.append(("full sync vs boto: wall s", label_wall(res, "sync"),
                 f"boto {num(boto, 2)}" if boto else NA,
                 ratio(boto, s, "{:.1f}x faster") if s and boto else NA, ">= 10x faster"))
    rows.append(("full sync: CPU s (user+sys)", num(cpu(res.sync), 2),
                 f"bound {num(cpu(res.bound), 2)}" if res.bound else NA,
                 ratio(cpu(res.sync), cpu(res.bound)), ""))
    rows.append(("full sync: peak RSS MiB", num(mib(res.sync)),
                 f"bound {num(mib(res.bound))}" if res.bound else NA, "",
                 "< 200 at 1M images"))
    rows.append(("full sync: rows written (all)", num(res.sync_rows),
                 f"bound {num(b['rows_copied'])} COPYed" if b else NA,
                 ratio(res.sync_rows, b and b["rows_copied"]), ""))
    rows.append(("full sync: rows written (tables)", num(persistent(res, "sync")),
                 f"bound {num(b['rows_copied'])} COPYed" if b else NA,
                 ratio(persistent(res, "sync"), b and b["rows_copied"]), ""))
    rows.append(("unchanged re-sync: wall s", label_wall(res, "resync"),
                 f"full sync {num(s, 2)}" if s else NA, ratio(wall(res.resync), s),
                 "<= 0.33x full"))
    rows.append(("unchanged re-sync: rows written (all)", num(res.resync_rows),
                 f"full sync {num(res.sync_rows)}", pct_of(res.resync_rows, res.sync_rows),
                 "< 1 %"))
    rows.append(("unchanged re-sync: rows written (tables)", num(persistent(res, "resync")),
                 f"full sync {num(persistent(res, 'sync'))}",
                 pct_of(persistent(res, "resync"), persistent(res, "sync")), "< 1 %"))
    return rows


def sweep_rows(res):
    if res.sweep is None:
        return []
    s = wall(res.sweep)
    rows = [("full sweep: wall s", label_wall(res, "sweep"), "", "", ""),
            ("full sweep: CPU s (user+sys)", num(cpu(res.sweep), 2), "", "", ""),
            ("full sweep: peak RSS MiB", num(mib(res.sweep)), "", "", "< 200 at 1M images"),
            ("full sweep: rows written (all)", num(res.sweep_rows), "", "", ""),
            ("full sweep: rows written (tables)", num(persistent(res, "sweep")), "", "", "")]
    if res.resweep is not None:
        rows += [("unchanged re-sweep: wall s", label_wall(res, "resweep"),
                  f"full sweep {num(s, 2)}", ratio(wall(res.resweep), s), "<= 0.33x full"),
                 ("unchanged re-sweep: rows written (all)", num(res.resweep_rows),
                  f"full sweep {num(res.sweep_rows)}", pct_of(res.resweep_rows, res.sweep_rows),
                  "< 1 %"),
                 ("unchanged re-sweep: rows written (tables)", num(persistent(res, "resweep")),
                  f"full sweep {num(persistent(res, 'sweep'))}",
                  pct_of(persistent(res, "resweep"), persistent(res, "sweep")), "< 1 %")]
    return rows


def other_rows(res):
    rows = []
    p = res.push if isinstance(res.push, dict) else None
    if p or os.path.exists(os.path.join(res.d, "push.err")):
        rows.append(("push->claim p50 ms", num(p and p["p50_ms"]), "", "", ""))
        rows.append(("push->claim p99 ms", num(p and p["p99_ms"]), "", "", "< 50"))
        # Claims run ahead of free workers: the scan's end shows any backlog.
        if p and p.get("done"):
            rows.append((f"push->scan done p50 ms ({num(p['done'])} scans)",
                         num(p["done_p50_ms"]), "", "", ""))
            rows.append(("push->scan done p99 ms", num(p["done_p99_ms"]), "", "", ""))
    i = res.idle if isinstance(res.idle, dict) else None
    if i:
        pct = 100.0 * i["ticks"] / i["hz"] / i["seconds"]
        rows.append((f"idle serve CPU % core ({num(i['connections'])} conns)",
                     f"{pct:.2f}", "", "", "< 1 %"))
    return rows


def print_table(rows):
    head = ("figure", "hgfleet", "baseline/bound", "ratio", "target")
    widths = [max(len(str(r[k])) for r in rows + [head]) for k in range(5)]
    line = lambda r: " | ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    print(line(head))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def fleet_line(res):
    r, b = res.run, res.bound_out if isinstance(res.bound_out, dict) else {}
    return (f"preset {r.get('preset')}: {num(r.get('registries'))} registries "
            f"({r.get('accounts')} accounts x {r.get('regions')}), "
            f"{num(b.get('repositories'))} repositories, {num(b.get('images'))} images; "
            f"{r.get('latency_ms')} ms per call; DescribeRepositories/DescribeImages quota "
            f"{r.get('describe_quota')}/s per (account, region); hgfleet workers "
            f"{r.get('workers')}; "
            + (f"PostgreSQL {r['pg_settings']}; " if r.get('pg_settings') else "")
            + f"{r.get('cpu')}, nproc {r.get('nproc')}, "
            f"{r.get('mem_gib')} GiB; load average "
            f"{r.get('load_start')} at start, {res.load_end} at end")


def sum_jobs(jobs, key):
    return sum((j.get("result") or {}).get(key, 0) or 0 for j in jobs)


def sum_applied(jobs, key):
    return sum(((j.get("result") or {}).get("applied") or {}).get(key, 0) or 0 for j in jobs)


def sync_notes(res):
    notes = []
    jobs = res.sync_jobs
    if jobs and res.sync:
        secs = sum_jobs(jobs, "seconds")
        ok = sum(1 for j in jobs if j.get("status") == "ok")
        notes.append(
            f"full sync: {ok}/{len(jobs)} jobs ok, {num(sum_jobs(jobs, 'images'))} images, "
            f"{num(sum_jobs(jobs, 'api_calls'))} API calls (bound "
            f"{num(res.bound_out.get('calls') if isinstance(res.bound_out, dict) else None)}), "
            f"job seconds summed {num(secs, 1)} = {secs / wall(res.sync):.1f} jobs busy on "
            f"average, {secs / max(len(jobs), 1):.3f} s per job")
        notes.append(
            f"full sync applied (hgfleet's own count): rows_written "
            f"{num(sum_applied(jobs, 'rows_written'))}, new_images "
            f"{num(sum_applied(jobs, 'new_images'))}, tag_moves "
            f"{num(sum_applied(jobs, 'tag_moves'))}, scans_queued "
            f"{num(sum_applied(jobs, 'scans_queued'))}")
    for name in ("sync", "resync", "sweep", "resweep", "bound", "baseline"):
        sim = getattr(res, name + "_sim")
        if isinstance(sim, dict):
            ops = ", ".join(f"{op} {num(v.get('calls'))}" for op, v in sim.get("calls", {}).items())
            notes.append(f"ecrsim calls during {name}: {ops or 'none'}; throttled "
                         f"{num(throttled(sim))}")
    return notes


def table_deltas(res, name):
    t0, t1 = load(res.d, name + ".tables0.json"), load(res.d, name + ".tables1.json")
    if not isinstance(t0, dict) or not isinstance(t1, dict):
        return None
    return {t: n - t0.get(t, 0) for t, n in t1.items() if n - t0.get(t, 0)}


def is_catalog(table):
    return table.startswith(("pg_catalog.", "pg_toast.", "information_schema."))


def persistent(res, name):
    d = table_deltas(res, name)
    return None if d is None else sum(n for t, n in d.items() if not is_catalog(t))


def pct_of(part, whole):
    return f"{100.0 * part / whole:.2f} %" if part is not None and whole else NA


def table_notes(res):
    notes = []
    for name in ("sync", "resync", "sweep", "resweep"):
        delta = table_deltas(res, name)
        if delta is None:
            continue
        order = sorted(delta.items(), key=lambda x: -x[1])
        own = ", ".join(f"{t.split('.', 1)[1]} {num(n)}" for t, n in order if not is_catalog(t))
        cat = ", ".join(f"{t.split('.', 1)[1]} {num(n)}" for t, n in order if is_catalog(t))
        notes.append(f"rows written during {name}, by table: {own or 'none'}; system catalogs: "
                     f"{cat or 'none'}; the rest of (all) is temporary staging tables")
    return notes


def others_notes(res):
    notes = []
    for name in ("bound", "baseline", "sync", "resync", "sweep", "resweep", "idle"):
        o = load(res.d, name + ".others.json")
        r = getattr(res, name, None) if name != "idle" else None
        if not isinstance(o, dict) or (not r and name != "idle"):
            continue
        if name == "idle":
            i = res.idle if isinstance(res.idle, dict) else {}
            notes.append(f"during the idle window ({i.get('seconds')} s): PostgreSQL CPU "
                         f"{num(o['postgres_cpu_seconds'], 2)} s; statements of serve:")
        else:
            notes.append(f"during {name} ({num(wall(r), 2)} s): {name} process CPU "
                         f"{num(cpu(r), 2)} s, PostgreSQL CPU {num(o['postgres_cpu_seconds'], 2)} s, "
                         f"ecrsim CPU {num(o['ecrsim_cpu_seconds'], 2)} s")
        w = load(res.d, name + ".wal.json")
        if isinstance(w, dict) and name != "idle":
            notes.append(f"    WAL: {num(w['records'])} records, {num(w['fpi'])} full-page images, "
                         f"{num(int(w['bytes']) / 1048576, 1)} MiB; {num(w['checkpoints'])} "
                         f"checkpoints")
        tot = load(res.d, name + ".statements_total.json")
        if isinstance(tot, dict):
            plan = tot.get("plan_seconds")
            notes.append(f"    all top-level statements of the database: {num(tot['calls'])} calls, "
                         f"{num(tot['seconds'], 2)} s of execution"
                         + (f" + {num(plan, 2)} s of planning" if plan is not None else "")
                         + "; the top ones:")
        st = load(res.d, name + ".statements.json")
        for q in (st if isinstance(st, list) else [])[:5]:
            level = "" if q.get("toplevel") else "nested "
            plan_ms = q.get("plan_ms") or 0
            plan = f" (+{num(plan_ms / 1000.0, 2)} s planning)" if plan_ms >= 5 else ""
            notes.append(f"    {level}{num(q['ms'] / 1000.0, 2)} s{plan} in {num(q['calls'])} calls "
                         f"({num(q['rows'])} rows): {q['query']}")
    return notes


def sweep_notes(res):
    notes = []
    if isinstance(res.sweep_jobs, dict) and res.sweep:
        done, total = res.sweep_jobs.get("scans_done"), res.sweep_jobs.get("scans")
        notes.append(f"full sweep: {num(done)} of {num(total)} scan jobs done in "
                     f"{num(wall(res.sweep), 1)} s ({done / wall(res.sweep):.1f} scans/s)"
                     if done is not None else "full sweep: no scan count")
    return notes


def other_notes(res):
    notes = []
    if isinstance(res.boto_out, dict) and res.baseline:
        notes.append(f"baseline: {num(res.boto_out['images'])} images, "
                     f"{num(res.boto_out['calls'])} pages in {num(res.boto_out['wall_seconds'], 2)} s "
                     f"of listing (process {num(wall(res.baseline), 2)} s with start-up, "
                     f"CPU {num(cpu(res.baseline), 2)} s), botocore {res.boto_out['botocore']}")
    if isinstance(res.bound_out, dict):
        b = res.bound_out
        notes.append(f"bound: {num(b['calls'])} calls, {b['bytes'] / 1048576:.1f} MiB of JSON, "
                     f"fetch CPU {num(b['fetch_cpu_seconds'], 2)} s, throttled {b['throttled']}, "
                     f"caps {b['per_registry']} per registry / {b['total']} in total")
    p = res.push if isinstance(res.push, dict) else None
    if p:
        notes.append(f"push: {p['claimed']} of {p['events']} events claimed at {p['rate']}/s, "
                     f"max {num(p['max_ms'])} ms")
    i = res.idle if isinstance(res.idle, dict) else None
    if i:
        pg = 100.0 * i["postgres_ticks"] / i["hz"] / i["seconds"]
        notes.append(f"idle: {i['seconds']} s window, {i['plan_seconds']} s after serve was up; "
                     f"PostgreSQL (whole cluster) "
                     f"{pg:.2f} % of a core meanwhile; jobs in the table: {i['jobs']}")
    if res.sim_hwm:
        notes.append(f"ecrsim peak RSS {int(res.sim_hwm) / 1024:.0f} MiB")
    return notes


def main():
    res = Results(sys.argv[1])
    print()
    print(fleet_line(res))
    print("rows written (all) = pg_stat_database tup_inserted+tup_updated+tup_deleted delta of "
          "the database: every table, jobs and temporary staging tables included;")
    print("rows written (tables) = the same from pg_stat_all_tables for hgfleet's own tables "
          "(not the system catalogs, not temporary tables)")
    print()
    print_table(sync_rows(res) + sweep_rows(res) + other_rows(res))
    print()
    notes = (sync_notes(res) + table_notes(res) + sweep_notes(res) + other_notes(res) +
             others_notes(res))
    for n in notes:
        print(("      " + n.strip()) if n.startswith(" ") else ("  - " + n))


if __name__ == "__main__":
    main()
