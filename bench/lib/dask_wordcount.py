"""Word count with dask.bag on a LocalCluster, the baseline of bench/mapreduce.ts.

    python3 dask_wordcount.py --workers 2 --runs 3 --out counts.tsv FILE...

A word is what the built-in wordcount counts: a maximal run of ASCII letters and digits, lowercased (the text is read
as latin-1, one char per byte, so no other char lowercases into ASCII). One partition per file. Each run is timed from
the bag's creation to the counts sorted by word in byte order as "word<TAB>count" lines (what Hearth's job delivers);
the cluster's start-up is timed apart, and where psutil is there each run's CPU time (this process, which holds the
scheduler, and every worker process). The last run's table goes to --out. Prints one JSON line.
"""
import argparse
import json
import re
import time

WORD = re.compile(r"[a-z0-9]+")


def words(line):
    return WORD.findall(line.lower())


def cpu_seconds():
    """CPU time of this process and its descendants (the workers), or None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    me = psutil.Process()
    total = 0.0
    for process in [me] + me.children(recursive=True):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out")
    parser.add_argument("--split", action="store_true", help="str.split words instead (counts then differ)")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    started = time.perf_counter()
    import dask.bag as db
    from dask.distributed import Client, LocalCluster

    imported = time.perf_counter()
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    ready = time.perf_counter()
    runs = []
    cpu = []
    table = b""
    try:
        # A first run warms the workers' imports and is not counted.
        for i in range(args.runs + 1):
            begun = time.perf_counter()
            cpu_before = cpu_seconds()
            bag = db.read_text(args.files, blocksize=None, encoding="latin-1")
            tokens = bag.map(str.split) if args.split else bag.map(words)
            counts = tokens.flatten().frequencies().compute()
            table = "".join(f"{word}\t{count}\n" for word, count in sorted(counts)).encode("latin-1")
            if i > 0:
                runs.append((time.perf_counter() - begun) * 1000)
                if cpu_before is not None:
                    cpu.append((cpu_seconds() - cpu_before) * 1000)
    finally:
        client.close()
        cluster.close()
    if args.out:
        with open(args.out, "wb") as out:
            out.write(table)
    print(json.dumps({"importMs": (imported - started) * 1000, "clusterStartMs": (ready - imported) * 1000, "runsMs": runs, "cpuMs": cpu, "distinct": table.count(b"\n")}))


if __name__ == "__main__":
    main()
