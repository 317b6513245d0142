"""Training and inference throughput of every registered model, against a plain reference
implementation and against this machine's fp32 matmul speed.

Usage::

    python benchmarks/throughput.py --quick        # CPU: a few minutes, smaller batches
    python benchmarks/throughput.py                # batch 64 training, more iterations
    python benchmarks/throughput.py --compile      # CUDA: also time torch.compile

Measures, at 32^3 on the current device (CUDA if available):
- per model: training samples/s (forward, backward, Adam step) and inference samples/s, for
  the model as built (eval + inference_mode) and for ``optimize_for_inference``;
- the plain reference (``benchmarks/plain_reference.py``) in the same round-robin, so its
  ratio is measured under the same load;
- fp32 matmul GFLOP/s (large square matmul) and the achieved GFLOP/s of every run (FLOPs from
  ``torch.utils.flop_counter``; training FLOPs measured over forward + backward);
- peak training memory per sample with and without ``memory_efficient`` (CPU: peak RSS of a
  fresh subprocess above its pre-step RSS; CUDA: ``max_memory_allocated``);
- data-loader samples/s from a memory-mapped float32 (N, 32, 32, 32) array, the dataset format.

On CPU every timing is reported as wall-clock and as process CPU time (the machine may be
shared: CPU time is what the run itself consumed). Each iteration runs all variants in turn
(round-robin) and ratios are medians of per-round ratios, so load changes hit all alike.
Results go to ``benchmarks/results/throughput_<device>_<mode>_<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from plain_reference import load_from, plain_dilated_densenet
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import tomoclass
from tomoclass.models import (
    count_flops,
    get_model,
    list_models,
    optimize_for_inference,
)
from tomoclass.provenance import git_commit, write_result
from tomoclass.runtime import retain_freed_memory

HERE = Path(__file__).resolve().parent

SIZE = 32
NUM_CLASSES = 12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def round_robin(
    fns: dict[str, Callable[[], None]], iters: int, warmup: int, device: torch.device
) -> dict[str, dict[str, list[float]]]:
    """Run every function once per round; return per-name wall and CPU seconds per round."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    _sync(device)
    out = {k: {"wall": [], "cpu": []} for k in fns}
    for _ in range(iters):
        for k, f in fns.items():
            w, c = time.perf_counter(), time.process_time()
            f()
            _sync(device)
            out[k]["wall"].append(time.perf_counter() - w)
            out[k]["cpu"].append(time.process_time() - c)
    return out


def summarize(times: dict[str, list[float]], batch: int) -> dict[str, float]:
    return {
        "samples_per_s_wall": batch / statistics.median(times["wall"]),
        "samples_per_s_cpu_time": batch / statistics.median(times["cpu"]),
        "best_samples_per_s_wall": batch / min(times["wall"]),
    }


def ratio(a: dict[str, list[float]], b: dict[str, list[float]], key: str) -> float:
    """Median over rounds of time(b) / time(a): how many times faster a is than b."""
    return statistics.median(tb / ta for ta, tb in zip(a[key], b[key], strict=True))


def matmul_gflops(device: torch.device, n: int, reps: int) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def train_flops_per_sample(model: nn.Module, device: torch.device) -> int:
    """Forward + backward FLOPs of one training sample (batch 2 / 2; BN needs > 1 sample)."""
    model.train()
    x = torch.randn(2, 1, SIZE, SIZE, SIZE, device=device)
    y = torch.zeros(2, dtype=torch.long, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops()) // 2


def make_train_step(model: nn.Module, batch: int, device: torch.device, amp: bool,
                    channels_last_input: bool = False) -> Callable[[], None]:
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, 1, SIZE, SIZE, SIZE, generator=g).to(device)
    if channels_last_input:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        model.train()  # the inference rounds of another thread count set eval mode
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def make_infer(model: nn.Module, batch: int, device: torch.device, amp: bool) -> Callable[[], None]:
    x = torch.randn(batch, 1, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).to(
        device)

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                    enabled=amp):
            model(x)

    return infer


_MEMORY_CHILD = r"""
import json, torch
from tomoclass.models import get_model
def status_kb(key):
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return int(line.split()[1])
torch.manual_seed(0)
m = get_model({name!r}, num_classes=12, memory_efficient={me!r}).train()
x = torch.randn({batch}, 1, 32, 32, 32); y = torch.zeros({batch}, dtype=torch.long)
opt = torch.optim.Adam(m.parameters(), lr=1e-4)
# one small step first so that lazily allocated state (Adam moments, grads) exists
torch.nn.functional.cross_entropy(m(x[:2]), y[:2]).backward(); opt.step()
opt.zero_grad(set_to_none=False)
before = status_kb('VmRSS')
torch.nn.functional.cross_entropy(m(x), y).backward(); opt.step()
# VmHWM, not ru_maxrss: the latter keeps the parent's high-water mark across fork/exec
peak = status_kb('VmHWM')
print(json.dumps({{"before_kb": before, "peak_kb": peak}}))
"""


def peak_train_memory_per_sample(name: str, memory_efficient: bool, batch: int,
                                 device: torch.device) -> dict[str, float]:
    """Peak extra memory of one training step per sample, in MiB."""
    if device.type == "cuda":
        torch.manual_seed(0)
        m = get_model(name, num_classes=NUM_CLASSES, memory_efficient=memory_efficient)
        m = m.to(device).train()
        x = torch.randn(batch, 1, SIZE, SIZE, SIZE, device=device)
        y = torch.zeros(batch, dtype=torch.long, device=device)
        nn.functional.cross_entropy(m(x[:2]), y[:2]).backward()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        nn.functional.cross_entropy(m(x), y).backward()
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
        return {"mib_per_sample": extra / batch / 2**20, "method": "cuda max_memory_allocated"}
    code = _MEMORY_CHILD.format(name=name, me=memory_efficient, batch=batch)
    # A fixed mmap threshold makes glibc return every freed large block at once, so the
    # peak RSS follows the live tensors instead of the allocator's high-water heap. The child
    # imports the tomoclass this process runs (installed, or on $PYTHONPATH).
    src = str(Path(tomoclass.__file__).resolve().parents[1])
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()),
               MALLOC_MMAP_THRESHOLD_="65536",
               PYTHONPATH=os.pathsep.join([src] + ([os.environ["PYTHONPATH"]]
                                                  if os.environ.get("PYTHONPATH") else [])))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    d = json.loads(res.stdout.strip().splitlines()[-1])
    extra_kb = d["peak_kb"] - d["before_kb"]
    return {"mib_per_sample": extra_kb / 1024 / batch,
            "method": "subprocess peak RSS (VmHWM) minus RSS before the step, "
                      "MALLOC_MMAP_THRESHOLD_=65536"}


def loader_samples_per_s(batch: int, n: int, workers: int) -> float:
    """Samples/s of a DataLoader over a memory-mapped float32 (n, 32, 32, 32) .npy file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "subtomograms.npy"
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                        shape=(n, SIZE, SIZE, SIZE))
        arr[:] = np.random.default_rng(0).standard_normal(arr.shape, dtype=np.float32)
        arr.flush()
        del arr

        class MemmapSet(torch.utils.data.Dataset):
            def __init__(self) -> None:
                self.v = np.load(path, mmap_mode="r")

            def __len__(self) -> int:
                return len(self.v)

            def __getitem__(self, i: int):
                return torch.from_numpy(np.array(self.v[i])[None]), i % NUM_CLASSES

        dl = torch.utils.data.DataLoader(MemmapSet(), batch_size=batch, shuffle=True,
                                         num_workers=workers,
                                         generator=torch.Generator().manual_seed(0))
        t = time.perf_counter()
        seen = sum(len(xb) for xb, _ in dl)
        return seen / (time.perf_counter() - t)


def machine_info(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        flags = Path("/proc/cpuinfo").read_text()
        info["avx2"] = " avx2 " in flags
        info["avx512f"] = " avx512f " in flags
        info["mem_total_gib"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def print_table(res: dict, label: str) -> None:
    """One thread count's training and inference rows."""
    print(f"\n{'training, ' + label:44s} {'samples/s':>10s} {'cpu-time':>9s} {'GFLOP/s':>8s} "
          f"{'x plain':>8s} {'x plain(cpu)':>12s} {'of matmul':>9s}")
    for section in ("training", "inference"):
        if section == "inference":
            print(f"\n{'inference, ' + label:44s}")
        for k, d in res[section].items():
            print(f"{k:44s} {d['samples_per_s_wall']:10.2f} {d['samples_per_s_cpu_time']:9.2f} "
                  f"{d['achieved_gflops_wall']:8.1f} {d['speedup_vs_plain_reference_wall']:8.2f} "
                  f"{d.get('speedup_vs_plain_reference_cpu_time', float('nan')):12.2f} "
                  f"{d['fraction_of_matmul_wall']:9.2f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="CPU-sized: batch 8 training / 16 inference, 3 timed rounds")
    p.add_argument("--train-batch", type=int, default=None)
    p.add_argument("--infer-batch", type=int, default=None)
    p.add_argument("--iters", type=int, default=None, help="timed rounds")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--thread-counts", default=None, metavar="N1,N2",
                   help="CPU: time training and inference at each of these torch thread counts "
                        "in turn (default 1,2: the speed-up over the plain reference differs "
                        "between them, issue 18); the top-level numbers are the last count's")
    p.add_argument("--compile", action="store_true", help="CUDA: also time torch.compile")
    p.add_argument("--models", nargs="*", default=None, help="subset of registered models")
    p.add_argument("--out", type=Path, default=HERE / "results")
    return p.parse_args(argv)


def train_steps(models: dict, plain: torch.nn.Module, batch: int, device: torch.device,
                compile_too: bool) -> dict[str, Callable[[], None]]:
    """One timed training step per variant: the plain reference, each model, and (dilated net)
    memory-efficient; on CUDA also the reference with bf16 + channels-last, and compiled."""
    cuda = device.type == "cuda"
    amp = cuda  # bf16 autocast on GPU; CPU runs fp32
    fns: dict[str, Callable[[], None]] = {
        "plain_reference": make_train_step(plain, batch, device, amp=False)}
    for n, m in models.items():
        fns[n] = make_train_step(m, batch, device, amp=amp)
        if "memory_efficient" in m.model_config and n == "dilated_densenet3d":
            me = get_model(n, num_classes=NUM_CLASSES, memory_efficient=True).to(device)
            fns[n + "+memory_efficient"] = make_train_step(me, batch, device, amp)
    if cuda:
        # the plain reference on the GPU in the paper's fp32, and with AMP + channels-last
        plain_amp = plain_dilated_densenet(NUM_CLASSES).to(device).to(
            memory_format=torch.channels_last_3d)
        fns["plain_reference+amp_bf16+channels_last"] = make_train_step(
            plain_amp, batch, device, amp=True, channels_last_input=True)
        if compile_too and "dilated_densenet3d" in models:
            comp = torch.compile(get_model("dilated_densenet3d", num_classes=NUM_CLASSES)
                                 .to(device))
            fns["dilated_densenet3d+compile"] = make_train_step(comp, batch, device, amp)
    return fns


def infer_steps(models: dict, plain: torch.nn.Module, batch: int, device: torch.device,
                compile_too: bool) -> tuple[dict[str, Callable[[], None]], dict]:
    """One timed inference call per variant (as built and ``optimize_for_inference``), and
    the optimized models."""
    cuda = device.type == "cuda"
    fns: dict[str, Callable[[], None]] = {
        "plain_reference": make_infer(plain.eval(), batch, device, amp=False)}
    fast = {}
    for n, m in models.items():
        m.eval()
        fns[n] = make_infer(m, batch, device, amp=cuda)
        fast[n] = optimize_for_inference(m)
        fns[n + "+optimized"] = make_infer(fast[n], batch, device, amp=cuda)
    if cuda and compile_too and "dilated_densenet3d" in models:
        comp = torch.compile(models["dilated_densenet3d"])
        fns["dilated_densenet3d+compile"] = make_infer(comp, batch, device, cuda)
    return fns, fast


def optimized_logits_check(models: dict, fast: dict, device: torch.device) -> dict:
    """Optimized logits against the plain reference with the same weights. Run before any
    timing: the timed training steps change the model's weights, not the optimized snapshot."""
    if "dilated_densenet3d" not in models:
        return {}
    ref = plain_dilated_densenet(NUM_CLASSES).to(device).eval()
    load_from(ref, models["dilated_densenet3d"])
    x = torch.randn(4, 1, SIZE, SIZE, SIZE, device=device)
    with torch.inference_mode():
        a = ref(x).float()
        b = fast["dilated_densenet3d"](x).float()
    return {"max_abs_diff_optimized_vs_plain_logits": float((a - b).abs().max()),
            "max_abs_plain_logit": float(a.abs().max())}


def describe_timings(timed: dict, batches: tuple[int, int], flops: tuple[dict, dict],
                     peak: float, cuda: bool) -> dict:
    """Samples/s, GFLOP/s and speed-up over the plain reference for every thread count."""
    train_batch, infer_batch = batches
    flops_train, flops_fwd = flops

    def describe(times: dict, all_times: dict, batch: int, flops: float) -> dict:
        d = summarize(times, batch)
        d["achieved_gflops_wall"] = d["samples_per_s_wall"] * flops / 1e9
        d["achieved_gflops_cpu_time"] = d["samples_per_s_cpu_time"] * flops / 1e9
        d["fraction_of_matmul_wall"] = d["achieved_gflops_wall"] / peak
        d["speedup_vs_plain_reference_wall"] = ratio(times, all_times["plain_reference"], "wall")
        if not cuda:
            d["speedup_vs_plain_reference_cpu_time"] = ratio(times, all_times["plain_reference"],
                                                             "cpu")
        return d

    def base_of(name: str) -> str:
        return name.split("+")[0]

    return {str(n): {"training": {k: describe(v, tr, train_batch, flops_train[base_of(k)])
                                  for k, v in tr.items()},
                     "inference": {k: describe(v, inf, infer_batch, flops_fwd[base_of(k)])
                                   for k, v in inf.items()}}
            for n, (tr, inf) in timed.items()}


def train_memory(models: dict, batch: int, device: torch.device) -> dict:
    """Peak training memory per sample, with and without ``memory_efficient``."""
    memory = {}
    for n, m in models.items():
        if "memory_efficient" not in m.model_config:
            continue
        plain_mem = peak_train_memory_per_sample(n, False, batch, device)
        eff_mem = peak_train_memory_per_sample(n, True, batch, device)
        memory[n] = {
            "batch": batch,
            "plain_mib_per_sample": plain_mem["mib_per_sample"],
            "memory_efficient_mib_per_sample": eff_mem["mib_per_sample"],
            "reduction": 1 - eff_mem["mib_per_sample"] / plain_mem["mib_per_sample"],
            "method": plain_mem["method"],
        }
        print(f"memory {n}: {memory[n]}", flush=True)
    return memory


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # as `tomoclass train` on a CPU does (TOMOCLASS_MALLOC=system: glibc as it is)
    malloc_retained = retain_freed_memory() if device.type == "cpu" else False
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    if args.thread_counts:
        thread_counts = [int(t) for t in args.thread_counts.split(",") if t.strip()]
    else:
        thread_counts = [args.threads] if (args.threads or cuda) else [1, 2]
    if cuda:
        thread_counts = [torch.get_num_threads()]
    quick = args.quick
    train_batch = args.train_batch or (8 if quick and not cuda else 64)
    infer_batch = args.infer_batch or (16 if quick and not cuda else (512 if cuda else 64))
    iters = args.iters or (3 if quick else (20 if cuda else 6))
    warmup = 1 if not cuda else 3
    names = args.models or list_models()
    load_before = os.getloadavg()
    started = time.perf_counter()
    print(f"device {device}, threads {torch.get_num_threads()}, load {load_before}, "
          f"train batch {train_batch}, infer batch {infer_batch}, rounds {iters}", flush=True)

    result: dict = {
        "benchmark": "throughput",
        "mode": "quick" if quick else "full",
        "malloc_retained": malloc_retained,
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine_info(device),
        "shared_machine_note": "CPU runs here share 2 cores with other developers' jobs; "
        "loadavg is recorded before and after; CPU-time figures count only this process.",
        "load_avg_before": load_before,
        "input_size": SIZE,
        "train_batch": train_batch,
        "infer_batch": infer_batch,
        "timed_rounds": iters,
        "warmup_rounds": warmup,
        "optimizer": "Adam",
        "sizing_note": ("quick mode: batch 8 training and 16 inference instead of 64, 3 rounds, "
                        "to fit in about 5 minutes on 2 CPU cores") if quick else
        "full mode: batch 64 training",
    }

    result["matmul_fp32_gflops"] = matmul_gflops(device, 8192 if cuda else 2048, 5)
    print(f"fp32 matmul: {result['matmul_fp32_gflops']:.1f} GFLOP/s", flush=True)

    torch.manual_seed(0)
    models = {n: get_model(n, num_classes=NUM_CLASSES).to(device) for n in names}
    plain = plain_dilated_densenet(NUM_CLASSES).to(device)
    flops_fwd = {n: count_flops(m) for n, m in models.items()}
    flops_fwd["plain_reference"] = flops_fwd.get("dilated_densenet3d") or count_flops(
        get_model("dilated_densenet3d", num_classes=NUM_CLASSES).to(device))
    flops_train = {n: train_flops_per_sample(m, device) for n, m in models.items()}
    flops_train["plain_reference"] = train_flops_per_sample(plain, device)

    train_fns = train_steps(models, plain, train_batch, device, args.compile)
    infer_fns, fast = infer_steps(models, plain, infer_batch, device, args.compile)
    check = optimized_logits_check(models, fast, device)

    timed = {}
    for n_threads in thread_counts:
        torch.set_num_threads(n_threads)
        print(f"threads {n_threads}: training round-robin:", ", ".join(train_fns), flush=True)
        train_t = round_robin(train_fns, iters, warmup, device)
        print(f"threads {n_threads}: inference round-robin:", ", ".join(infer_fns), flush=True)
        timed[n_threads] = (train_t, round_robin(infer_fns, iters, warmup, device))
    train_t, _ = timed[thread_counts[-1]]

    result["flops_forward_per_sample"] = flops_fwd
    result["flops_train_per_sample"] = flops_train
    result["thread_counts"] = thread_counts
    result["by_threads"] = describe_timings(timed, (train_batch, infer_batch),
                                            (flops_train, flops_fwd),
                                            result["matmul_fp32_gflops"], cuda)
    last = result["by_threads"][str(thread_counts[-1])]
    result["training"], result["inference"] = last["training"], last["inference"]
    if "dilated_densenet3d+memory_efficient" in train_t:
        result["memory_efficient_slowdown_wall"] = ratio(
            train_t["dilated_densenet3d+memory_efficient"], train_t["dilated_densenet3d"], "wall")
        if not cuda:
            result["memory_efficient_slowdown_cpu_time"] = ratio(
                train_t["dilated_densenet3d+memory_efficient"], train_t["dilated_densenet3d"],
                "cpu")
    result["optimized_logits_check"] = check
    result["train_memory"] = train_memory(models, train_batch, device)
    result["loader"] = {
        "samples_per_s": loader_samples_per_s(train_batch, 8 * train_batch, workers=0),
        "workers": 0,
        "source": "memory-mapped float32 .npy (N, 32, 32, 32), the dataset store's format",
    }
    result["load_avg_after"] = os.getloadavg()
    result["elapsed_s"] = time.perf_counter() - started

    for n_threads, res in result["by_threads"].items():
        print_table(res, f"{n_threads} thread(s)")
    print(f"\nloader: {result['loader']['samples_per_s']:.0f} samples/s; "
          f"load avg before {load_before}, after {result['load_avg_after']}; "
          f"{result['elapsed_s']:.0f} s")
    path = write_result(f"throughput_{device.type}_{result['mode']}", result,
                        results_dir=args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
