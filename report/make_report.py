"""`make report`: run every problem, then build report/report.html and report/report.pdf.

    python report/make_report.py [--retrain] [--quick] [--results DIR] [--data-dir D] [--no-download]
                                 [--only p1,p5] [--author NAME] [--collaborators "A, B"] [--full-code]

By default P1, P2, P4 (with the EOT attack) and P5 (with learning) run fully (P2's first run extracts the
Pets features once and caches them in .cache/features/), and the P3 networks
are evaluated from the committed weights in weights/ (--eval-only) with the batch-norm comparison plot
redrawn. --retrain trains the P3 networks instead (hours on a CPU).

Before any long work it prints which parts the data at hand can answer and the fix for each one it cannot:
a dataset missing from the data root is downloaded where its host answers (--no-download forbids it);
without Oxford-IIIT Pet, P2 is left out; without CIFAR-10, P3 shows the results recorded beside the
committed weights, marked as not re-evaluated. It runs what it can, builds the report with the missing
parts marked, prints the table again and exits 2 naming them (0 when every part was answered, 1 when a
run failed). Each problem runs as its own subprocess; its exact command, exit status, time and last error
line go to DIR/report_runs.json (its output to DIR/logs/<name>.log), and a failing problem does not stop
the others: its section of the report then shows "not yet produced" with the error line.
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (REPO, HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from problems.common.cli import DATA_ENV, UserError, output_folder, run_main, seed_value  # noqa: E402
from scratchnet.io import write_json  # noqa: E402
from jobs import plan, problem_of, readiness  # noqa: E402
import build_report  # noqa: E402


def last_error_line(log_text: str) -> str | None:
    """The line that says why a run failed: the script's 'error: ...' line, else the traceback's last line."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error:"):
            return ln
    return lines[-1][:300] if lines else None


def run_job(job, log_path: Path) -> dict:
    """Run one problem script from the repository root, echoing and logging its output."""
    record = {"name": job.name, "command": job.command(), "produces": job.produces, "rc": None,
              "seconds": None, "error": None, "skip": job.skip, "log": None}
    if not job.skip and job.missing_inputs():
        record["skip"] = job.skip = f"needs {', '.join(job.missing_inputs())}, which no run has produced"
    if job.skip:
        print(f"[report] skip {job.name}: {job.skip}", flush=True)
        return record
    print(f"[report] {job.command()}", flush=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONUNBUFFERED"] = "1"         # progress lines arrive as they are printed, not at exit
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, *map(str, job.argv)], cwd=REPO, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        for line in proc.stdout:          # echo live (long runs show progress) and keep a copy
            sys.stdout.write(line)
            log.write(line)
        rc = proc.wait()
    record.update(rc=rc, seconds=round(time.perf_counter() - t0, 1), log=f"{log_path.parent.name}/{log_path.name}")
    if rc != 0:
        record["error"] = last_error_line(log_path.read_text())
        print(f"[report] {job.name} failed (exit {rc}): {record['error']}; continuing", flush=True)
    return record


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--retrain", action="store_true",
                   help="train the P3 networks (hours on a CPU) instead of evaluating the committed weights")
    p.add_argument("--quick", action="store_true", help="skip the P4 EOT attack and P5 learning (minutes less)")
    p.add_argument("--results", type=output_folder, default=REPO / "results", help="results root (default: results/)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed passed to every problem script (default: 0)")
    p.add_argument("--data-dir", default=None, help="data root (default: $SCRATCHNET_DATA, else ./data)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="let P2 and P3 fetch a dataset the data root lacks when its host answers (default: on)")
    p.add_argument("--only", default=None,
                   help="comma list of runs to do (p1,p2,p3_small,p3_small_bn,p3_compare,p3_better,p4,p4_study,p5; "
                        "p3_both with --retrain); the others keep their existing results")
    p.add_argument("--out", type=output_folder, default=HERE, help="where report.html/.pdf go (default: report/)")
    p.add_argument("--author", default=os.environ.get("REPORT_AUTHOR") or None,
                   help="the author's name for the cover (default: $REPORT_AUTHOR, else printed as not given)")
    p.add_argument("--collaborators", default=os.environ.get("REPORT_COLLABORATORS") or None,
                   help="comma-separated collaborators for the cover (default: $REPORT_COLLABORATORS, else "
                        "printed as none named)")
    p.add_argument("--full-code", action="store_true",
                   help="print every code file whole in the report's Appendix B, the scratchnet library included")
    args = p.parse_args(argv)
    if args.data_dir is not None:
        if not Path(args.data_dir).is_dir():
            raise UserError(f"--data-dir {args.data_dir} is not a folder; expected the data root "
                            "(with peppers.png, cifar10/, pets/)")
        args.data_dir = str(Path(args.data_dir).resolve())  # the problems run from the repository root
    elif os.environ.get(DATA_ENV):
        os.environ[DATA_ENV] = str(Path(os.environ[DATA_ENV]).expanduser().resolve())  # likewise
    results = args.results.resolve()
    ready = readiness(args.data_dir, args.download, retrain=args.retrain)
    jobs = plan(results, retrain=args.retrain, data_dir=args.data_dir, quick=args.quick, seed=args.seed,
                download=args.download, ready=ready)
    if args.only is not None:
        wanted = {w.strip() for w in args.only.split(",") if w.strip()}
        if not wanted:
            raise UserError(f"--only {args.only!r} names no run; expected some of {', '.join(j.name for j in jobs)}")
        unknown = wanted - {j.name for j in jobs}
        if unknown:
            raise UserError(f"--only: unknown run(s) {', '.join(sorted(unknown))}; expected some of "
                            f"{', '.join(j.name for j in jobs)}")
        jobs = [j for j in jobs if j.name in wanted]
    problems = sorted({problem_of(j.name) for j in jobs})
    print(plan_table(ready, problems, args.data_dir, "before the runs"), flush=True)
    results.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    records = [run_job(job, results / "logs" / f"{job.name}.log") for job in jobs]
    write_json(results / "report_runs.json", {"started": started, "retrain": args.retrain, "quick": args.quick,
                                              "download": args.download, "runs": records})
    out = build_report.build(results, args.out, full_code=args.full_code, author=args.author,
                             collaborators=args.collaborators)
    failed = [r["name"] for r in records if r["rc"] not in (0, None)]
    print(plan_table(ready, problems, args.data_dir, "after the runs", records), flush=True)
    print(f"wrote {out['html']} and {out['pdf']} ({out['pages']} pages)"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    incomplete = [p for p in problems if ready[p].state != "answer"]
    if failed:
        return 1
    if incomplete:
        print(f"error: the report is incomplete: {', '.join(f'{p.upper()} ({ready[p].state})' for p in incomplete)}"
              "; the table above names the fix", file=sys.stderr)
        return 2
    return 0


def plan_table(ready: dict, problems: list, data_dir, when: str, records: list | None = None) -> str:
    """The parts the report can answer with the data at hand, and the fix for each one it cannot."""
    from problems.common.cli import DATA_ENV, data_root
    root = data_root(data_dir)
    source = "--data-dir" if data_dir else (f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "default ./data")
    lines = [f"[report] data root DATA = {root} ({source}; {'found' if root.is_dir() else 'absent'}), "
             f"{when}:", f"  {'part':<5} {'state':<9} detail"]
    by_problem = {}
    for r in records or []:
        by_problem.setdefault(problem_of(r["name"]), []).append(r)
    for p in problems:
        state, detail = ready[p].state, ready[p].detail
        bad = [r for r in by_problem.get(p, []) if r["rc"] not in (0, None)]
        if bad:
            state, detail = "failed", "; ".join(f"{r['name']}: {r['error']}" for r in bad)
        lines.append(f"  {p.upper():<5} {state:<9} {detail}")
        if ready[p].fix and state != "failed":
            lines.append(f"  {'':<5} {'fix:':<9} {ready[p].fix}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_main(main))
