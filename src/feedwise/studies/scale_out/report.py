"""Report sections of a scale-out study (`feedwise parallel`): steps- and time-to-result of
synchronous DDP, local SGD and Hogwild per world size, and the α–β / Amdahl projection.

Reads summary.json and trials/ only (never the engine)."""

from __future__ import annotations

from pathlib import Path

from feedwise.report.plots import save
from feedwise.report.sections import Section, table_html, table_md
from feedwise.results import StudyDir, read_json

QUESTION = 'What does real data parallelism buy in wall-clock time to the target?'

COLORS = {"sync": "C0", "local-sgd": "C1", "hogwild": "C2"}


def _label(g: dict) -> str:
    return f"{g['mode']}" + (f" H={g['local_steps']}" if g.get("local_steps") else "")


def plot_results(groups: list[dict], trials: list[dict], path: Path, title: str = "") -> Path:
    """Two panels: time-to-result (s) and steps-to-result per mode and world size; one dot per
    trial (seed), bars at the median."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    labels = sorted({_label(g) for g in groups}, key=lambda s: (["sync", "local-sgd", "hogwild"].index(s.split()[0]), s))
    worlds = sorted({g["world_size"] for g in groups})
    width = 0.8 / max(1, len(labels))
    for k, (ax, key, trial_key, name) in enumerate([
            (axes[0], "time_to_result_s_median", "time_to_result_s", "time-to-result (training s)"),
            (axes[1], "steps_to_result_median", "steps_to_result", "steps-to-result")]):
        for i, lab in enumerate(labels):
            mode = lab.split()[0]
            xs, ys = [], []
            for j, n in enumerate(worlds):
                g = next((g for g in groups if _label(g) == lab and g["world_size"] == n), None)
                if g is None:
                    continue
                x = j + (i - (len(labels) - 1) / 2) * width
                if g.get(key) is not None:
                    xs.append(x)
                    ys.append(g[key])
                pts = [t.get(trial_key) for t in trials if _label(t) == lab and t["world_size"] == n]
                pts = [p for p in pts if p is not None]
                ax.scatter([x] * len(pts), pts, color="k", s=8, zorder=3)
            ax.bar(xs, ys, width=width * 0.9, color=COLORS.get(mode, "C3"), alpha=0.8, label=lab)
        ax.set_xticks(range(len(worlds)))
        ax.set_xticklabels([f"N={n}" for n in worlds])
        ax.set_ylabel(name)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def plot_projection(proj: dict, path: Path, measured: list[dict] | None = None) -> Path:
    """Per-step compute and all-reduce time and the time-to-result the model projects, per N."""
    import matplotlib.pyplot as plt

    rows = proj["rows"]
    ns = [r["world_size"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    ax = axes[0]
    ax.plot(ns, [r["compute_s_per_step"] * 1e3 for r in rows], "o-", label="compute c(B/N)")
    ax.plot(ns, [r["comm_s_per_step"] * 1e3 for r in rows], "s-", label="ring all-reduce (α–β)")
    ax.plot(ns, [r["s_per_step"] * 1e3 for r in rows], "k--", label="step = compute + all-reduce")
    if proj.get("comm_dominates_from"):
        ax.axvspan(proj["comm_dominates_from"], max(ns), color="C3", alpha=0.1, label="communication dominates")
    if measured:
        ax.scatter([m["world_size"] for m in measured], [m["s_per_step"] * 1e3 for m in measured], marker="x",
                   color="C3", zorder=4, label="measured sync s/step")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("world size N")
    ax.set_ylabel("ms per step")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    ttr = [r["time_to_result_s"] for r in rows]
    if all(t is not None for t in ttr):
        ax.plot(ns, ttr, "o-", color="k", label=f"model: {proj['steps_to_result']} steps × s/step")
        ax.set_ylabel("time-to-result (s)")
    else:
        ax.plot(ns, [r["speedup"] for r in rows], "o-", color="k", label="model speedup")
        ax.set_ylabel("speedup vs N=1")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("world size N")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"α–β / Amdahl model, global batch {proj['global_batch']}, {proj['grad_bytes'] / 1e3:.0f} kB of "
                 "gradients", fontsize=10)
    return save(fig, path)


def _amdahl(v) -> str:
    """Amdahl's limit; infinite (no serial part) is written to JSON as null."""
    return "without bound (no serial part was measured)" if v is None else f"at most {v:.1f}×"


def _fmt_s(v, scale=1.0, digits=3):
    return None if v is None else round(v * scale, digits)


def build_sections(study_dir: Path, assets: Path) -> list[Section]:
    study_dir, assets = Path(study_dir), Path(assets)
    sd = StudyDir(study_dir)
    if not sd.summary_path.exists():
        return [Section(title="Scale-out", kind="scale-out", html="<p>No summary.json yet.</p>",
                        markdown="No summary.json yet.", caveats=["the study has not finished a run"])]
    summary = read_json(sd.summary_path)
    trials = [t.read() for t in sd.trials()]
    trials = [t for t in trials if t.get("status") not in (None, "running")]
    groups = summary["groups"]
    name = study_dir.name
    header = ["mode", "N", "threads/worker", "backend", "seeds", "reached", "steps-to-result", "median steps",
              "time-to-result s (median)", "s/step", "compute s/step", "all-reduce s/step", "speedup vs sync N=1"]
    rows = [[_label(g), g["world_size"], g["threads_per_worker"], g["backend"] or "-", len(g["seeds"]),
             f"{g['reached']}/{g['trials']}", g["steps_to_result"], g.get("steps_to_result_median"), _fmt_s(g["time_to_result_s_median"], 1, 2),
             _fmt_s(g["s_per_step_median"], 1, 5), _fmt_s(g["compute_s_per_step_median"], 1, 5),
             _fmt_s(g["comm_s_per_step_median"], 1, 5), _fmt_s(g.get("speedup_vs_sync_w1"), 1, 2)] for g in groups]
    png = plot_results(groups, trials, assets / f"scale-out-{name}-results.png",
                       title=f"{summary.get('workload')}: global batch {summary.get('batch_size')}, "
                             f"target {summary.get('target')}")
    loads = [x for t in trials for x in (t.get("load_avg_start") or [None])[:1] + (t.get("load_avg_end") or [None])[:1]
             if x is not None]
    intro = (f"Each step consumes one global batch of {summary.get('batch_size')} examples split over the N workers "
             "(sync: one DDP update; local SGD: N local updates averaged every H steps; Hogwild: N lock-free updates "
             "of B/N examples on shared memory). Time-to-result is the training wall time (evaluation excluded, run on "
             "rank 0) until the first evaluation below the target. Compute and all-reduce time are split by a DDP "
             "communication hook (bucket ready → all-reduce done).")
    caveats = [f"{summary.get('cpu_count')} CPU cores shared with other jobs: the 1-minute load average during the "
               f"trials ranged {min(loads):.1f}–{max(loads):.1f}" if loads else "load average not recorded",
               "Hogwild's comm time is the barrier before each evaluation (no gradient communication)",
               "local SGD averages also before each evaluation so that the evaluated model is the shared one"]
    same = sync_agreement(sd, trials)
    if same:
        caveats.append(same)
    sections = [Section(title=f"Scale-out: steps and time to result ({name})", kind="scale-out",
                        html=f"<p>{intro}</p>" + table_html(header, rows),
                        markdown=intro + "\n\n" + table_md(header, rows), images=[png], caveats=caveats)]
    proj = summary.get("projection")
    if proj:
        sections.append(_projection_section(proj, groups, name, assets))
    return sections


def sync_agreement(sd: StudyDir, trials: list[dict]) -> str | None:
    """How closely sync DDP on N>1 workers followed the single process, seed by seed (the same
    maths; float summation order differs and chaotic training amplifies it over many steps)."""
    pairs = []
    for t in trials:
        if t["mode"] != "sync" or t["world_size"] == 1:
            continue
        base = next((b for b in trials if b["mode"] == "sync" and b["world_size"] == 1 and b["seed"] == t["seed"]), None)
        if base is None:
            continue
        la = [r["train_loss"] for r in sd.trial(base["id"]).measurements()]
        lb = [r["train_loss"] for r in sd.trial(t["id"]).measurements()]
        rel = [abs(x - y) / abs(x) for x, y in zip(la, lb) if x]
        if rel:
            pairs.append((t, base, rel))
    if not pairs:
        return None
    first5 = max(max(rel[:5]) for _, _, rel in pairs)
    worst = max(max(rel) for _, _, rel in pairs)
    equal = sum(t.get("steps_to_result") == b.get("steps_to_result") for t, b, _ in pairs)
    return (f"sync DDP on N>1 workers vs one process, same seed ({len(pairs)} pair(s)): training loss per evaluation "
            f"interval within {first5:.1e} (relative) over the first 5 evaluations and within {worst:.1e} over the whole "
            f"run (float summation order differs and grows over many steps); equal steps-to-result in {equal} of "
            f"{len(pairs)}")


def _projection_section(proj: dict, groups: list[dict], name: str, assets: Path) -> Section:
    measured = [{"world_size": g["world_size"], "s_per_step": g["s_per_step_median"]} for g in groups
                if g["mode"] == "sync" and g.get("s_per_step_median")]
    png = plot_projection(proj, assets / f"scale-out-{name}-projection.png", measured=measured)
    ab, cm = proj["alpha_beta"], proj["compute"]
    text = (f"Fitted on this machine: all-reduce latency α = {ab['alpha_s'] * 1e6:.1f} µs, inverse bandwidth β = "
            f"{ab['beta_s_per_byte'] * 1e9:.3f} ns/byte ({1 / max(ab['beta_s_per_byte'], 1e-30) / 1e9:.2f} GB/s); "
            f"per-step compute c(b) = {cm['c0_s'] * 1e3:.3f} ms + {cm['c1_s_per_example'] * 1e6:.2f} µs × b "
            f"({proj.get('threads_per_worker')} thread(s) per worker), so the serial (Amdahl) fraction at the "
            f"global batch is {proj['serial_fraction']:.2f} and compute alone could speed up "
            f"{_amdahl(proj.get('amdahl_max_speedup'))}. Measured all-reduce per step at N={proj['measured_world_size']}: "
            f"{proj['measured_comm_s_per_step'] * 1e3:.3f} ms (model: "
            f"{proj['predicted_comm_s_per_step_at_measured'] * 1e3:.3f} ms; the measured one includes waiting for the "
            f"slower rank). Communication exceeds compute from N = {proj['comm_dominates_from']}; the model's fastest "
            f"world size is N = {proj['best_world_size']}.")
    header = ["N", "local batch", "compute ms/step", "all-reduce ms/step", "ms/step", "speedup", "time-to-result s",
              "comm dominates"]
    rows = [[r["world_size"], r["local_batch"], r["compute_s_per_step"] * 1e3, r["comm_s_per_step"] * 1e3,
             r["s_per_step"] * 1e3, r["speedup"], r["time_to_result_s"], "yes" if r["comm_dominates"] else "no"]
            for r in proj["rows"]]
    assumptions = "".join(f"<li>{a}</li>" for a in proj["assumptions"])
    return Section(
        title=f"Scale-out: α–β / Amdahl model of time-to-result ({name})", kind="scale-out",
        html=f"<p>{text}</p><p>Assumptions:</p><ul>{assumptions}</ul>" + table_html(header, rows),
        markdown=text + "\n\nAssumptions:\n" + "".join(f"- {a}\n" for a in proj["assumptions"]) + "\n" +
        table_md(header, rows),
        images=[png],
        caveats=["α and β come from processes on one machine (loopback); across machines both are larger, so "
                 "communication dominates earlier than projected here"])


def conclusion(study_dir: Path) -> str | None:
    """One short paragraph for the top of the page, from summary.json: time to result per mode and N."""
    sd = StudyDir(study_dir)
    if not sd.summary_path.exists():
        return None
    summary = read_json(sd.summary_path)
    cells = []
    for g in summary.get("groups", []):
        t = g.get("time_to_result_s_median")
        if t is None:
            cells.append(f"{_label(g)} N={g['world_size']}: target not reached")
            continue
        sp = g.get("speedup_vs_sync_w1")
        cells.append(f"{_label(g)} N={g['world_size']}: {t:.1f} s" + (f" (speed-up {sp:.2f} vs sync N=1)" if sp is not None else ""))
    if not cells:
        return None
    return (f"{summary.get('workload')}, global batch {summary.get('batch_size')}: median time to result "
            f"(training seconds) " + "; ".join(cells) + ".")
