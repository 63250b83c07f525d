"""Issue 15, 2026-12-07 (docs/kws_accuracy.md, "Teacher ensembles and teachers trained in the
project, measured"): KWS teachers t10-t12 (the kws default recipe with seeds 10-12), then per
student seed the default recipe, and that model (resumed at the end of its label phase)
distilled from MLPerf ref + t10-t12 ("ensref") and from t10-t12 ("self").

ROOT is a kws project made by benchmarks/train.py's setup_kws (``--workdir /tmp/kwsT``); results
are appended to /tmp/teachers/results.jsonl (kept as benchmarks/kws15_teacher_runs.jsonl). In
the run of record t10 and t11 were trained by ``benchmarks/train.py --tasks kws --seeds S
--variants none`` (the same recipe) and copied to /tmp/teachers; seeds 0 and 1 were run."""
import json, os, shutil, sys, time
from pathlib import Path
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import val_int8
from kiloml.workflow.project import Project
from kiloml.workflow.train import train_project

ROOT = Path("/tmp/kwsT/kws")
T = Path("/tmp/teachers")
REF = "/work/shared/models/mlperf_tiny/kws_ref_model.tflite"
OUT = T / "results.jsonl"
CK = T / "ck"
CK.mkdir(exist_ok=True)

def train(seed, teacher=None, labels=None, resume=None):
    p = Project.load(ROOT)
    p.config.train.seed = seed
    p.config.train.teacher = teacher
    p.config.train.teacher_labels = labels
    p.save()
    if (ROOT / "model").exists():
        shutil.rmtree(ROOT / "model")
    if resume:
        (ROOT / "model" / "checkpoints" / "float").mkdir(parents=True)
        shutil.copy(resume, ROOT / "model" / "checkpoints" / "float" / "last.pt")
    t0 = time.time()
    s = train_project(Project.load(ROOT), progress=False)
    return s, time.time() - t0


def log(row):
    with OUT.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(row, flush=True)


for s in (10, 11, 12):
    if not (T / f"t{s}.tflite").exists():
        summ, wall = train(s)
        shutil.copy(ROOT / "model" / "model.tflite", T / f"t{s}.tflite")
        log({"teacher": s, "int8": summ["int8_accuracy"], "val": val_int8(ROOT), "wall": wall})
own = [str(T / f"t{s}.tflite") for s in (10, 11, 12)]
done = {(r.get("seed"), r.get("variant")) for r in map(json.loads, OUT.read_text().splitlines() if OUT.exists() else [])}
for seed in (0, 1, 2, 3):
    if (seed, "default") not in done:
        summ, wall = train(seed)
        shutil.copy(ROOT / "model" / "checkpoints" / "float" / "last.pt", CK / f"{seed}.pt")
        log({"seed": seed, "variant": "default", "int8": summ["int8_accuracy"], "val": val_int8(ROOT), "wall": wall})
    for name, teacher, labels in (("ensref", [REF] + own, [["mlperf-kws"], [], [], []]),
                                  ("self", own, [[], [], []])):
        if (seed, name) in done:
            continue
        summ, wall = train(seed, teacher, labels, CK / f"{seed}.pt")
        shutil.copy(ROOT / "model" / "model.tflite", T / f"{name}{seed}.tflite")
        log({"seed": seed, "variant": name, "int8": summ["int8_accuracy"], "val": val_int8(ROOT), "wall": wall})
