"""Shared pieces of the bench/ scripts: the machine record, a realistic random base model,
random PEFT LoRA adapters, timing, and writing results.

Contract: every bench script takes `--smoke` (seconds-long sizes, for `make bench-smoke`)
and writes `bench/results/<name>.json` = {"bench", "machine", "smoke", "results",
"targets"} via `write(...)`, printing a table. Times are wall-clock percentiles over
`repeat` calls after `warmup` (CUDA synchronised before each clock read); speed claims are
ratios against a baseline measured in the same run, never absolute targets in tests.
`--device` / `--dtype` (default: $COMPOSER_DEVICE / $COMPOSER_DTYPE, else auto) put every model
a bench builds, baselines included, on the same device and dtype; a CUDA run writes
`<name>-cuda.json` beside the CPU figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / ".cache"  # generated models, reused across runs (git-ignored)


def args(description: str, **extra) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (CI)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--out", default=str(RESULTS), help="results directory")
    p.add_argument("--device", default=os.environ.get("COMPOSER_DEVICE", "auto"), help="auto|cpu|cuda[:N]")
    p.add_argument(
        "--dtype", default=os.environ.get("COMPOSER_DTYPE", "auto"), help="auto|bfloat16|float16|float32"
    )
    for name, kw in extra.items():
        p.add_argument(f"--{name.replace('_', '-')}", **kw)
    a = p.parse_args()
    from composer.host.host import resolve

    a.device, a.dtype = resolve(a.device, a.dtype)
    if a.threads:
        torch.set_num_threads(a.threads)
    from composer.progress import set_quiet
    from composer.settings import Settings

    quiet = Settings.from_env().quiet  # COMPOSER_QUIET=1 (bench-smoke): no progress bars
    set_quiet(quiet)
    if quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    return a


def machine(a: argparse.Namespace | None = None) -> dict:
    gpu = a is not None and a.device.type == "cuda"
    return {
        "device": str(a.device) if a else None,
        "dtype": str(a.dtype).removeprefix("torch.") if a else None,
        "gpu": torch.cuda.get_device_name(a.device) if gpu else None,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor(),
    }


def sync() -> None:
    """Wait for queued CUDA work, so a clock read covers what was asked (a no-op on the CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeat: int = 10, warmup: int = 2) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return _stats(times)


def compare(fns: dict[str, Callable[[], object]], repeat: int = 10, warmup: int = 1) -> dict[str, dict]:
    """Time several variants interleaved (round-robin), so machine drift hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t0)
    return {k: _stats(v) for k, v in times.items()}


def _stats(times: list[float]) -> dict:
    times = sorted(times)
    return {
        "p50_ms": 1000 * statistics.median(times),
        "p99_ms": 1000 * times[min(len(times) - 1, int(0.99 * len(times)))],
        "mean_ms": 1000 * statistics.fmean(times),
        "n": len(times),
    }


def realistic_base(
    path: Path, hidden: int = 512, layers: int = 8, heads: int = 8, vocab: int = 2048, seed: int = 0
) -> Path:
    """A random-weight Llama (speed needs no training) with a small BPE tokenizer, saved as HF."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from composer.demo.train import train_tokenizer

    if (path / "config.json").exists():
        return path
    texts = [f"sample text {i} with some words and numbers {i * 7}" for i in range(200)]
    tok = train_tokenizer(texts, vocab_size=min(vocab, 512))
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def random_adapters(
    base: Path,
    out: Path,
    n: int,
    rank: int = 8,
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    seed: int = 0,
) -> list[Path]:
    """`n` PEFT LoRA adapters of `base` with random (non-zero) A and B, saved as PEFT dirs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = [out / f"e{i:03d}" for i in range(n)]
    if all((p / "adapter_model.safetensors").exists() for p in paths):
        return paths
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets)),
    )
    g = torch.Generator().manual_seed(seed)
    for p in paths:
        with torch.no_grad():
            for name, t in model.named_parameters():
                if "lora_" in name:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.02)
        model.save_pretrained(p)
    return paths


def demo_home(home: str | None) -> Path:
    """A registry with the demo ocean: `home` if given, else $COMPOSER_HOME when it has one, else
    the fast symbols ocean built once into bench/.cache (about two minutes)."""
    from composer.demo.build import build_demo
    from composer.settings import Settings
    from registry import Registry

    if home:
        return Path(home)
    env_home = Settings.from_env().home_dir
    if (env_home / "demo" / "report.json").exists():
        return env_home
    path = CACHE / "ocean-fast"
    if not (path / "demo" / "report.json").exists():
        build_demo(
            Registry(home=path), path / "demo", fast=True, seed=0, log=lambda *a: None, ocean="symbols"
        )
    return path


def demo_benchmark(home: Path) -> list[dict]:
    """The rows of the demo ocean's `benchmark.jsonl` under `home` (DESIGN §6)."""
    return [json.loads(x) for x in (home / "demo" / "benchmark.jsonl").read_text().splitlines()]


@contextmanager
def server(home: Path, **settings):
    """Composer on Ray Serve on a free loopback port (Ray files in a temp dir, auth off); yields the URL."""
    import tempfile

    from composer.serving.ports import free_port
    from composer.settings import Settings
    from ray_cluster.launch import serve, shutdown

    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="rb", dir="/tmp"))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    url = serve(
        Settings(home=str(home), **settings), "127.0.0.1", free_port(), block=False, num_cpus=os.cpu_count()
    )
    try:
        yield url
    finally:
        shutdown(True)


def percentiles(latencies: list[float]) -> dict:
    xs = sorted(latencies)
    pick = (lambda q: 1000 * xs[min(len(xs) - 1, int(q * len(xs)))]) if xs else (lambda q: None)
    return {"p50_ms": pick(0.5), "p99_ms": pick(0.99), "n": len(xs)}


def write(name: str, a: argparse.Namespace, results: list[dict], targets: dict, columns: list[str]) -> Path:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = "-cuda" if a.device.type == "cuda" else ""
    path = out / f"{name}{cuda}{'-smoke' if a.smoke else ''}.json"
    path.write_text(
        json.dumps(
            {"bench": name, "machine": machine(a), "smoke": a.smoke, "results": results, "targets": targets},
            indent=1,
        )
    )
    widths = [max(len(c), *(len(_cell(r.get(c))) for r in results)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in results:
        print("  ".join(_cell(r.get(c)).ljust(w) for c, w in zip(columns, widths)))
    for k, v in targets.items():
        print(f"target {k}: {v}")
    print(f"wrote {path}")
    return path


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return "" if v is None else str(v)
