"""No-op task throughput of Dask distributed, the anchor of bench/engine.ts's throughput figures.

    python3 dask_noop.py --tasks 2000 --workers 8 --runs 3

For each kind of LocalCluster (worker processes, then workers in this process), with single-thread workers: a warm-up
batch, then --runs batches of --tasks no-op tasks (client.map, then gather), each timed from the first submit to the
last result. Prints one JSON line: per kind, the cluster's start-up and each run's tasks per second.
"""
import argparse
import json
import time


def noop(i):
    return i


def measure(processes, tasks, workers, runs):
    from dask.distributed import Client, LocalCluster

    started = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None)
    client = Client(cluster)
    ready = time.perf_counter()
    rates = []
    try:
        client.gather(client.map(noop, range(workers * 4), pure=False))
        for _ in range(runs):
            begun = time.perf_counter()
            client.gather(client.map(noop, range(tasks), pure=False))
            rates.append(tasks / (time.perf_counter() - begun))
    finally:
        client.close()
        cluster.close()
    return {"clusterStartMs": (ready - started) * 1000, "tasksPerSec": rates}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import distributed

    result = {"version": distributed.__version__}
    result["processes"] = measure(True, args.tasks, args.workers, args.runs)
    result["threads"] = measure(False, args.tasks, args.workers, args.runs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
