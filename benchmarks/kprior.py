"""Wall time of the full K-prior Adult sweep (configs/kprior/adult.py) and its accuracy table.

    JAXLAB_DATA_DIR=/path/to/datasets python benchmarks/kprior.py --out=benchmarks/results/kprior_adult.json
    # or --data_dir=/path/to/a7a (the folder with a7a and a7a_test)

4 tasks x 7 memory fractions x 3 seeds x K-prior / Replay / Batch, in this process: twice with the config's solver
(damped Newton with the IRLS Hessian; the first run includes compilation, there is no persistent compilation cache,
the second reuses the compiled solvers; data loading, memory selection and the plot are in both), then once more
with the peer solver measured in the same process, optax L-BFGS (zoom line search, history 100, <= 1000 steps, the
same tolerance; compilation included). Prints the wall times, the ratios against the peer and against the ~19
CPU-minutes the project's notes report for the official PyTorch code of Khan & Swaroop (2021) on a 2-core machine
(a figure quoted, NOT measured here), the largest accuracy difference to the peer, and the accuracy table
(mean +- std over seeds, %). Optional --float64 repeats the sweep in float64 and reports the largest accuracy
difference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

OFFICIAL_CPU_SECONDS = 19 * 60  # from the note: the official code's Adult sweep, ~19 CPU-minutes, 2 cores


def load_adult_config(data_dir: str):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "kprior", "adult.py")
    spec = importlib.util.spec_from_file_location("adult", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    if data_dir:
        config.data.dir = data_dir
    return config


def timed_run(config, workdir: str) -> tuple[float, list[dict]]:
    from jaxlab.experiments import kprior_adaptation
    start = time.perf_counter()
    summary = kprior_adaptation.run(config, workdir)
    return time.perf_counter() - start, kprior_adaptation.load_results(summary["results"])


def table(records: list[dict]) -> str:
    from jaxlab.experiments.kprior_adaptation import METHODS, TASKS
    from jaxlab.experiments.reports import summarize
    stats = summarize(records)
    fractions = sorted({r["memory_fraction"] for r in records}, reverse=True)
    lines = ["| task | method | " + " | ".join(f"{100 * f:g}%" for f in fractions) + " |",
             "|---|---|" + "---|" * len(fractions)]
    for task in TASKS:
        for method in METHODS:
            if (task, method, fractions[0]) not in stats:
                continue
            cells = [f"{100 * stats[(task, method, f)][0]:.1f} ± {100 * stats[(task, method, f)][1]:.1f}"
                     for f in fractions]
            lines.append(f"| {task} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="", help="folder with a7a and a7a_test, or its parent (default: the config's, $JAXLAB_DATA_DIR)")
    parser.add_argument("--out", default="", help="write timings and records as JSON here")
    parser.add_argument("--float64", action="store_true", help="also run the sweep in float64 and compare")
    args = parser.parse_args()

    import jax
    config = load_adult_config(args.data_dir)
    with tempfile.TemporaryDirectory() as workdir:
        first, records = timed_run(config, os.path.join(workdir, "first"))
        second, again = timed_run(config, os.path.join(workdir, "second"))
        peer_config = config.copy_and_resolve_references()
        peer_config.kprior.solver, peer_config.kprior.base_solver = "lbfgs", "lbfgs"
        peer, peer_records = timed_run(peer_config, os.path.join(workdir, "peer"))
        peer_difference = max(abs(a["test_accuracy"] - b["test_accuracy"]) for a, b in zip(records, peer_records))
        result = dict(
            machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}",
            jax_version=jax.__version__, devices=[str(d) for d in jax.devices()],
            load_average_at_end=os.getloadavg(),
            solver=config.kprior.solver, wall_s_compile_included=first, wall_s_compile_excluded=second,
            peer_solver="lbfgs", peer_wall_s_compile_included=peer, speedup_vs_peer_compile_included=peer / first,
            max_abs_accuracy_diff_vs_peer=peer_difference,
            official_cpu_s_from_note=OFFICIAL_CPU_SECONDS,
            speedup_vs_official_compile_included=OFFICIAL_CPU_SECONDS / first,
            speedup_vs_official_compile_excluded=OFFICIAL_CPU_SECONDS / second,
            runs_agree=[r["test_accuracy"] for r in records] == [r["test_accuracy"] for r in again],
            num_records=len(records), records=records)
        if args.float64:
            config.kprior.float64 = True
            wall64, records64 = timed_run(config, os.path.join(workdir, "float64"))
            result.update(wall_s_float64_compile_included=wall64, max_abs_accuracy_diff_float64=max(
                abs(a["test_accuracy"] - b["test_accuracy"]) for a, b in zip(records, records64)))
    print(f"Adult sweep ({len(records)} records), {config.kprior.solver}: {first:.1f} s with compilation, "
          f"{second:.1f} s without; peer lbfgs {peer:.1f} s with compilation ({peer / first:.1f}x slower; largest "
          f"test-accuracy difference {peer_difference:.4f})")
    print(f"With / without compilation, {OFFICIAL_CPU_SECONDS / first:.1f}x / {OFFICIAL_CPU_SECONDS / second:.1f}x "
          f"faster than the ~{OFFICIAL_CPU_SECONDS // 60} CPU-minutes the note reports for the official code (not measured here)")
    if args.float64:
        print(f"float64: {result['wall_s_float64_compile_included']:.1f} s; largest test-accuracy difference "
              f"to float32 {result['max_abs_accuracy_diff_float64']:.4f}")
    print(table(records))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
