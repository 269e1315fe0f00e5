"""Data path benchmark: ours vs the straightforward baseline, side by side in one run.

    .venv/bin/python benchmarks/data_throughput.py [--sources a,b] [--skip-baseline]

1. filter + dedup of the offline corpus: `corpus.build_corpus` vs `data_baseline.run` (MB/s);
2. tokenization of the filtered corpus: `packing.tokenize_and_pack` (tokenize, pack, write shards)
   vs `datasets.Dataset.map` with default arguments (tokenize only) (tokens/s);
3. peak RSS of `build_corpus` on the corpus as JSONL, once and doubled, each in a fresh process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import data_baseline  # noqa: E402

from fastdraft_dag.data.corpus import CorpusOptions, build_corpus  # noqa: E402
from fastdraft_dag.data.packing import tokenize_and_pack  # noqa: E402
from fastdraft_dag.sources.specs import SourceSpec, iter_source  # noqa: E402

OFFLINE = "python_stdlib,wikipedia,shakespeare,kjv_bible"


def filter_bench(specs: list[SourceSpec], work: Path, baseline: bool) -> tuple[dict, Path]:
    t = time.perf_counter()
    out = build_corpus(specs, work / "ours", CorpusOptions(workers=os.cpu_count() or 1))
    ours_s = time.perf_counter() - t
    mb = sum(s["bytes_in"] for s in out["stats"]) / 1e6
    kept = sum(s["docs_kept"] for s in out["stats"])
    row = {"ours_s": ours_s, "ours_mb_s": mb / ours_s, "ours_kept": kept, "mb": mb}
    row["funnel"] = [
        f"{s['source']}: {s['docs_in']} docs ({s['bytes_in'] / 1e6:.1f} MB) -> {s['docs_kept']} "
        f"({s['bytes_kept'] / 1e6:.1f} MB); "
        + ", ".join(f"{k} {v}" for k, v in s["dropped"].items() if v)
        for s in out["stats"]
    ]
    if baseline:
        t = time.perf_counter()
        records = itertools.chain.from_iterable(iter_source(s) for s in specs)
        counts = data_baseline.run(records)
        base_s = time.perf_counter() - t
        row |= {"base_s": base_s, "base_mb_s": mb / base_s, "base_kept": counts["kept"]}
        row["ratio"] = base_s / ours_s
        row["base_funnel"] = dict(counts)
    return row, work / "ours" / "corpus.parquet"


def tokenize_bench(corpus: Path, tokenizer_dir: Path, work: Path, baseline: bool) -> dict:
    import transformers  # noqa: F401 - imported before either clock starts, for both sides

    t = time.perf_counter()
    index = tokenize_and_pack(
        corpus, tokenizer_dir, work / "shards", seq_len=512, seqs_per_shard=2048, val_fraction=0.02
    )
    ours_s = time.perf_counter() - t
    # Packing drops each domain's last partial window; count what the tokenizer produced.
    tokens = sum(v for d in index["tokens"].values() for v in d.values())
    row = {"ours_s": ours_s, "ours_tok_s": tokens / ours_s, "tokens": tokens}
    if baseline:
        from datasets import Dataset, disable_progress_bars
        from transformers import AutoTokenizer

        disable_progress_bars()
        t = time.perf_counter()  # both sides load the tokenizer and read the parquet file
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        ds = Dataset.from_parquet(str(corpus), cache_dir=str(work / "hf-cache"))
        mapped = ds.map(lambda ex: tok(ex["text"], add_special_tokens=False))
        base_s = time.perf_counter() - t
        base_tokens = sum(len(x) for x in mapped["input_ids"])
        row |= {"base_s": base_s, "base_tok_s": base_tokens / base_s}
        row["ratio"] = row["ours_tok_s"] / row["base_tok_s"]
    return row


RSS_CHILD = """
import json, sys
from fastdraft_dag.data.corpus import build_corpus
from fastdraft_dag.sources.specs import SourceSpec
spec = SourceSpec(name="dump", kind="jsonl", domain=sys.argv[3], path=sys.argv[1])
build_corpus([spec], sys.argv[2])
# VmHWM, not ru_maxrss: the latter carries the parent's peak over fork + exec.
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"rss_mb": int(hwm.split()[1]) / 1024}))
"""


def peak_rss(jsonl: Path, out: Path, domain: str) -> float:
    cmd = [sys.executable, "-c", RSS_CHILD, str(jsonl), str(out), domain]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["rss_mb"]


def write_jsonl(path: Path, records: list[dict], copies: int) -> None:
    with open(path, "w") as f:
        for c in range(copies):
            for r in records:
                f.write(json.dumps({"id": f"{c}/{r['id']}", "text": r["text"]}) + "\n")


def memory_bench(work: Path, source: str) -> dict:
    records = list(iter_source(source))
    domain = SourceSpec.parse(source).domain
    row = {}
    for copies in (1, 2):
        path = work / f"{source}-x{copies}" / "dump.jsonl"
        path.parent.mkdir(parents=True)
        write_jsonl(path, records, copies)
        row[f"mb_x{copies}"] = path.stat().st_size / 1e6
        row[f"rss_x{copies}"] = peak_rss(path, path.parent / "out", domain)
    row["growth"] = row["rss_x2"] / row["rss_x1"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", default=OFFLINE)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--memory-source", default="python_stdlib")
    args = parser.parse_args()
    from fastdraft_dag.targets.resolve import resolve_target

    specs = [SourceSpec.parse(s) for s in args.sources.split(",")]
    home = Path(os.environ.get("FASTDRAFT_HOME", "artifacts"))
    target = resolve_target("embedded:smollm2-135m-instruct", home / "targets")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        f, corpus = filter_bench(specs, work, not args.skip_baseline)
        print(
            f"filter+dedup  {f['mb']:.1f} MB: ours {f['ours_s']:.1f} s ({f['ours_mb_s']:.2f} MB/s)"
        )
        for line in f["funnel"]:
            print(f"              {line}")
        if "ratio" in f:
            print(f"              baseline {f['base_s']:.1f} s ({f['base_mb_s']:.2f} MB/s)")
            print(
                f"              ratio {f['ratio']:.1f}x; docs kept ours {f['ours_kept']}, baseline {f['base_kept']}"
            )
            print(f"              baseline funnel {f['base_funnel']}")
        t = tokenize_bench(corpus, target.path, work, not args.skip_baseline)
        print(
            f"tokenization  {t['tokens']:,} tokens: ours {t['ours_s']:.1f} s ({t['ours_tok_s']:,.0f} tok/s)"
        )
        if "ratio" in t:
            print(f"              datasets.map {t['base_s']:.1f} s ({t['base_tok_s']:,.0f} tok/s)")
            print(f"              ratio {t['ratio']:.1f}x")
        m = memory_bench(work, args.memory_source)
        print(
            f"peak RSS      {args.memory_source} as JSONL: {m['mb_x1']:.0f} MB -> {m['rss_x1']:.0f} MB RSS; "
            f"doubled {m['mb_x2']:.0f} MB -> {m['rss_x2']:.0f} MB RSS (x{m['growth']:.2f})"
        )
        print(
            f"              this process (tokenization): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    main()
