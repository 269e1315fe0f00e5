"""Our filter + dedup path next to datatrove's, on the same corpus and cores; and how ours scales.

    python benchmarks/data_vs_datatrove.py [--sources a,b] [--max-docs N] [--grow-mb MB]
    python benchmarks/data_vs_datatrove.py --scale --scale-mb 1000

Head-to-head (default): the offline corpora are dumped once as parquet parts (text and code apart,
held-out documents left out), then each side runs in its own process, so peak RSS (summed over
the side's process tree, sampled) is its own:
  ours       `corpus.build_corpus` (what `filtered_corpora` runs), 2 worker processes;
  datatrove  ParquetReader -> Gopher quality, Gopher repetition, C4 quality, FineWeb quality
             (text documents only) -> ParquetWriter -> MinHash stage 1..4, 2 workers each stage.
Rules are aligned as the printed table says. The kept sets are compared by Jaccard of kept ids,
and the largest groups of disagreeing documents are listed with each side's reason.

Scale (`--scale`): the corpus grown to `--scale-mb` by perturbed copies (`data/scaling.py`),
through our path at 4 sizes (1/8, 1/4, 1/2, 1 of it): wall time and peak RSS per size, and the
fitted log-log growth exponent of each. Generated data lives in a temporary directory under the
artifact root (`FASTDRAFT_HOME`) and is removed at the end.

datatrove is an optional dependency: `pip install -e '.[bench]'` (`make bench-data-peers` does).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psutil

from fastdraft_dag.data.compare import disagreements, kept_jaccard
from fastdraft_dag.data.corpus import CorpusOptions, build_corpus
from fastdraft_dag.data.dedup import DedupConfig
from fastdraft_dag.data.filters import FilterConfig, first_failing
from fastdraft_dag.data.scaling import grow_corpus, growth_exponent, write_parts
from fastdraft_dag.sources.specs import SourceSpec, is_heldout, iter_source

OFFLINE = "python_stdlib,wikipedia,shakespeare,kjv_bible"
DOMAINS = ("text", "code")
PARTS = 4  # parquet files per domain: work for 2 workers on both sides
PART_BYTES = 64_000_000  # the largest input file of a grown corpus
NEVER = r"a\A"  # a regex that matches nothing: turns a pattern rule off

# Our rules, aligned with what datatrove can express (see RULES): the code rules have no
# datatrove counterpart and are off on both sides; the boilerplate line fraction is off (C4's
# line removal is not a document rule), its lorem-ipsum clause stays (C4 has it).
ALIGNED_FILTERS = FilterConfig(
    max_boilerplate_line_frac=1.0,
    max_line_len=10**9,
    max_mean_line_len=1e9,
    min_alnum_frac=0.0,
    max_digit_frac=1.0,
    max_encoded_frac=1.0,
    minified_pattern=NEVER,
    generated_pattern=NEVER,
)
DEDUP = DedupConfig()

# (rule, ours, datatrove, where it applies): the table printed with the results.
RULES = [
    ("length 200..400k chars", "min_chars/max_chars", "LambdaFilter", "both, all docs"),
    ("words 50..100k", "min_words/max_words", "Gopher min/max_doc_words", "both, text"),
    ("mean word length 3..10", "mean_word_len", "Gopher avg_word_length", "both, text"),
    ("# and ... per word <= 0.1", "symbol_ratio", "Gopher symbol_word_ratio", "both, text"),
    ("bullet lines <= 0.9", "bullet_lines", "Gopher bullet_lines_ratio", "both, text"),
    ("lines ending in ... <= 0.3", "-", "Gopher ellipsis_lines_ratio", "datatrove only"),
    ("alphabetic words >= 0.8", "alpha_words", "Gopher non_alpha_words_ratio", "both, text"),
    ("stop words >= 2", "stop_words", "Gopher min_stop_words", "both, text"),
    ("dup paragraph chars <= 0.2", "dup_paragraphs", "Repetition dup_para_char_frac", "both, text"),
    ("dup line chars <= 0.2", "dup_lines", "Repetition dup_line_char_frac", "both, text"),
    ("dup lines / paras <= 0.3", "-", "Repetition dup_line/para_frac: off", "neither"),
    ("top 2-4-gram chars", "-", "Repetition top_n_grams: off", "neither"),
    (
        "dup 5-grams <= 0.15",
        "dup_ngrams (share)",
        "Repetition dup_n_grams (5, 0.15) (chars)",
        "both, text",
    ),
    ("dup 6..10-grams", "-", "Repetition dup_n_grams 6..10: off", "neither"),
    ("lorem ipsum", "boilerplate (clause)", "C4 filter_lorem_ipsum", "both, text"),
    ("boilerplate lines <= 0.1", "boilerplate: off", "C4 javascript/policy lines: off", "neither"),
    ("curly bracket, < 5 sentences", "-", "C4: off", "neither"),
    (
        "lines ending in punctuation >= 0.1",
        "punct_lines",
        "FineWeb line_punct_thr 0.1",
        "both, text",
    ),
    ("short lines, dup-line chars, list ratio", "-", "FineWeb: off", "neither"),
    ("code rules (line length, alnum, ...)", "off", "(none in datatrove)", "neither"),
    ("exact dedup", "normalized md5", "(MinHash catches them)", "ours"),
    ("MinHash 5-grams, 128 = 32 x 4", "yes", "yes (xxhash 64)", "both"),
    ("words", "whitespace split", "whitespace split (not spaCy)", "both"),
    ("near-dup verification >= 0.7", "yes", "no (LSH bands only)", "ours only"),
]


# ---------------------------------------------------------------- the corpus, dumped once


def bench_spec(domain: str, parts: Path) -> SourceSpec:
    return SourceSpec(
        name=f"bench_{domain}",
        kind="parquet",
        domain=domain,
        path=str(parts / domain / "*.parquet"),
        id_column="id",
    )


def dump_corpus(sources: list[str], out: Path, max_docs: int | None, grow_mb: float) -> None:
    """Parquet parts per domain; documents our reader would hold out are left out for both.

    `grow_mb`: grow the corpus to this size by perturbed copies, each domain keeping its share.
    """
    specs = [SourceSpec.parse(s) for s in sources]
    records = {
        d: [r for s in specs if s.domain == d for r in iter_source(s, max_docs=max_docs)]
        for d in DOMAINS
    }
    size = {d: sum(len(r["text"].encode()) for r in rs) for d, rs in records.items()}
    for domain, recs in records.items():
        if not recs:
            continue
        it, target = iter(recs), size[domain]
        if grow_mb:
            target = int(grow_mb * 1e6 * size[domain] / sum(size.values()))
            it = grow_corpus(recs, target, seed=0)
        # Files of at most PART_BYTES, as a real corpus arrives: a fixed number of files would
        # make each unit, and so each worker's memory, grow with the corpus.
        parts = max(PARTS, math.ceil(target / PART_BYTES))
        write_parts(
            (r for r in it if not is_heldout(f"bench_{domain}/{r['id']}")), out / domain, parts
        )


def input_bytes(parts: Path) -> tuple[int, int]:
    """(documents, UTF-8 bytes of text) in the dump: the denominator of every figure."""
    glob = str(parts / "*" / "*.parquet")
    with duckdb.connect() as con:
        n, b = con.execute(
            f"SELECT count(*), sum(strlen(text)) FROM read_parquet('{glob}')"
        ).fetchone()
    return int(n), int(b or 0)


# ---------------------------------------------------------------- the two sides


def run_ours(parts: Path, out: Path, workers: int) -> dict:
    """`build_corpus` on the dump; kept ids without our source prefix, to match datatrove's."""
    specs = [bench_spec(d, parts) for d in DOMAINS if (parts / d).exists()]
    options = CorpusOptions(workers=workers, filters=ALIGNED_FILTERS, dedup=DEDUP)
    t = time.perf_counter()
    build_corpus(specs, out, options)
    wall = time.perf_counter() - t
    with duckdb.connect() as con:
        rows = con.execute(
            f"SELECT id, strlen(text) FROM read_parquet('{out / 'corpus.parquet'}')"
        ).fetchall()
    ids = [i.split("/", 1)[1] for i, _ in rows]
    return {"wall_s": wall, "kept": ids, "bytes_kept": sum(b for _, b in rows), "stages": {}}


def split_words() -> Any:
    """A datatrove word tokenizer that splits on whitespace, as our rules and shingles do.

    datatrove's English default is spaCy, which makes punctuation its own token: KJV chapters
    then fail Gopher's 80%-alphabetic-words rule ("," and "." are words without letters). Gopher
    defines words by whitespace; so do we. It is also faster than spaCy, so datatrove gains.
    """
    from datatrove.utils.word_tokenizers import WordTokenizer

    class SplitTokenizer(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [s for s in text.split("\n") if s.strip()]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            raise NotImplementedError("not used by the benchmark's filters")

    return SplitTokenizer("en")


def datatrove_filters() -> list[Any]:
    """datatrove's quality filters set to our thresholds; checks we do not have are off."""
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    c, tok = ALIGNED_FILTERS, split_words()
    return [
        GopherQualityFilter(
            min_doc_words=c.min_words,
            max_doc_words=c.max_words,
            min_avg_word_length=c.min_mean_word_len,
            max_avg_word_length=c.max_mean_word_len,
            max_symbol_word_ratio=c.max_symbol_ratio,
            max_bullet_lines_ratio=c.max_bullet_line_frac,
            max_non_alpha_words_ratio=c.min_alpha_word_frac,
            min_stop_words=c.min_stop_words,
            language=tok,
        ),
        GopherRepetitionFilter(
            dup_line_frac=None,
            dup_para_frac=None,
            dup_line_char_frac=c.max_dup_line_char_frac,
            dup_para_char_frac=c.max_dup_para_char_frac,
            top_n_grams=(),
            dup_n_grams=((DEDUP.ngram, c.max_dup_ngram_frac),),
            language=tok,
        ),
        C4QualityFilter(
            remove_citations=False,
            filter_no_terminal_punct=False,
            min_num_sentences=-1,
            min_words_per_line=-1,
            max_word_length=-1,
            filter_javascript=False,
            filter_curly_bracket=False,
            filter_policy=False,
            language=tok,
        ),
        FineWebQualityFilter(
            line_punct_thr=c.min_punct_line_frac,
            short_line_thr=1.0,
            char_duplicates_ratio=1.0,
            new_line_ratio=1e9,
            language=tok,
        ),
    ]


def in_length(doc: Any) -> bool:
    """Our `any` length rule, for datatrove's LambdaFilter (module level: workers pickle it)."""
    return ALIGNED_FILTERS.min_chars <= len(doc.text) <= ALIGNED_FILTERS.max_chars


def text_only(inner: Any) -> Any:
    """A datatrove filter applied to documents of domain `text` only (the rest pass)."""
    from datatrove.pipeline.filters.base_filter import BaseFilter

    class TextOnly(BaseFilter):
        name = f"{inner.name} (text)"

        def filter(self, doc: Any) -> bool | tuple[bool, str]:
            return inner.filter(doc) if doc.metadata.get("domain") == "text" else True

    return TextOnly()


def minhash_config() -> Any:
    from datatrove.pipeline.dedup.minhash import MinhashConfig

    return MinhashConfig(
        n_grams=DEDUP.ngram,
        num_buckets=DEDUP.bands,
        hashes_per_bucket=DEDUP.rows,
        seed=DEDUP.seed,
    )


def run_datatrove(parts: Path, out: Path, workers: int) -> dict:
    """FineWeb's shape: filter + signatures, buckets, clusters, then the dedup filter."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import LambdaFilter
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    cfg, logs = minhash_config(), out / "logs"
    readers = [
        ParquetReader(str(parts / d), id_key="id", default_metadata={"domain": d})
        for d in DOMAINS
        if (parts / d).exists()
    ]
    stages = {
        "filter+signatures": (
            [*readers, LambdaFilter(in_length), *map(text_only, datatrove_filters())]
            + [
                ParquetWriter(str(out / "filtered")),
                MinhashDedupSignature(str(out / "sigs"), config=cfg, language=split_words()),
            ],
            PARTS,
        ),
        "buckets": (
            [MinhashDedupBuckets(str(out / "sigs"), str(out / "buckets"), config=cfg)],
            cfg.num_buckets,
        ),
        "clusters": (
            [MinhashDedupCluster(str(out / "buckets"), str(out / "remove"), config=cfg)],
            1,
        ),
        "dedup filter": (
            [
                ParquetReader(str(out / "filtered"), id_key="id"),
                MinhashDedupFilter(str(out / "remove")),
            ]
            + [ParquetWriter(str(out / "kept"))],
            PARTS,
        ),
    }
    times, t0 = {}, time.perf_counter()
    for i, (name, (pipeline, tasks)) in enumerate(stages.items()):
        t = time.perf_counter()
        LocalPipelineExecutor(
            pipeline, tasks=tasks, workers=min(workers, tasks), logging_dir=str(logs / str(i))
        ).run()
        times[name] = time.perf_counter() - t
    wall = time.perf_counter() - t0
    with duckdb.connect() as con:
        rows = con.execute(
            f"SELECT id, strlen(text) FROM read_parquet('{out / 'kept'}/*.parquet')"
        ).fetchall()
    return {
        "wall_s": wall,
        "kept": [i for i, _ in rows],
        "bytes_kept": sum(b for _, b in rows),
        "stages": times,
    }


def side_main(side: str, parts: Path, out: Path, workers: int, result: Path) -> None:
    """Entry point of one side's process: run it, write its result JSON atomically."""
    run = run_ours if side == "ours" else run_datatrove
    res = run(parts, out, workers)
    tmp = result.with_name(f".{result.name}.tmp")
    tmp.write_text(json.dumps(res))
    os.replace(tmp, result)


# ---------------------------------------------------------------- measuring a side


@dataclass
class TreeUsage:
    """Peak of the summed RSS of a process and all its descendants, and their CPU seconds,
    sampled every `period` s.

    Both sides fan out to worker processes, so the parent's own high-water mark would miss most
    of the memory; sampling the tree counts the workers the same way on both sides. CPU time is
    each process's own user + system time at its last sample (at most `period` of it is missed),
    summed: on a shared machine it is steadier than wall time.
    """

    pid: int
    period: float = 0.1
    peak: int = 0
    cpu: dict[tuple[int, float], float] = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu.values())

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0
        for p in procs:
            try:
                with p.oneshot():
                    total += p.memory_info().rss
                    t = p.cpu_times()
                    self.cpu[(p.pid, p.create_time())] = t.user + t.system
            except psutil.NoSuchProcess:
                continue
        self.peak = max(self.peak, total)

    def watch(self, proc: subprocess.Popen) -> None:
        while proc.poll() is None:
            self.sample()
            time.sleep(self.period)


def measure_side(side: str, parts: Path, out: Path, workers: int) -> dict:
    """Run one side in a fresh process; its result plus the process tree's peak RSS (MB) and CPU
    seconds (start-up included): on a shared machine CPU time is steadier than wall time."""
    result = out.with_suffix(".json")
    cmd = [sys.executable, __file__, "--side", side, "--parts", str(parts)]
    cmd += ["--out", str(out), "--workers", str(workers), "--result", str(result)]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": _pythonpath()}
    with open(out.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        rss = TreeUsage(proc.pid)
        watcher = threading.Thread(target=rss.watch, args=(proc,))
        watcher.start()
        proc.wait()
        watcher.join()
    if proc.returncode:
        tail = out.with_suffix(".log").read_text()[-3000:]
        raise RuntimeError(f"side {side!r} on {parts} failed ({proc.returncode}):\n{tail}")
    return {**json.loads(result.read_text()), "rss_mb": rss.peak / 2**20, "cpu_s": rss.cpu_s}


def _pythonpath() -> str:
    repo = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)


# ---------------------------------------------------------------- reasons for disagreements


def texts(parts: Path, ids: list[str]) -> dict[str, tuple[str, str]]:
    """{id: (domain, text)} for the given ids, from the dump."""
    out: dict[str, tuple[str, str]] = {}
    if not ids:
        return out
    with duckdb.connect() as con:
        con.execute("CREATE TEMP TABLE want(id VARCHAR)")
        con.executemany("INSERT INTO want VALUES (?)", [(i,) for i in ids])
        for domain in DOMAINS:
            if (parts / domain).exists():
                glob = str(parts / domain / "*.parquet")
                rows = con.execute(
                    f"SELECT id, text FROM read_parquet('{glob}') JOIN want USING (id)"
                ).fetchall()
                out |= {i: (domain, t) for i, t in rows}
    return out


def our_reasons(parts: Path, ids: list[str]) -> dict[str, str]:
    """The first of our rules each document fails, else our dedup dropped it."""
    docs = texts(parts, ids)
    order = list(docs)
    if not order:
        return {}
    failed = first_failing(
        [{"domain": docs[i][0], "text": docs[i][1]} for i in order], ALIGNED_FILTERS, DEDUP.ngram
    )
    return {i: f or "exact/near dup" for i, f in zip(order, failed, strict=True)}


def their_reasons(parts: Path, ids: list[str]) -> dict[str, str]:
    """The first datatrove filter each document fails, else MinHash dropped it."""
    from datatrove.data import Document

    filters = [in_length, *datatrove_filters()]
    out = {}
    for i, (domain, text) in texts(parts, ids).items():
        doc, reason = Document(text=text, id=i, metadata={"domain": domain}), "minhash dup"
        for f in filters:
            if f is not in_length and domain != "text":
                continue
            verdict = f(doc) if f is in_length else f.filter(doc)
            if isinstance(verdict, tuple) or not verdict:
                name = "length" if f is in_length else f.name
                reason = f"{name}: {verdict[1] if isinstance(verdict, tuple) else 'dropped'}"
                break
        out[i] = reason
    return out


# ---------------------------------------------------------------- the two modes


def head_to_head(args: argparse.Namespace, work: Path) -> None:
    parts = work / "input"
    t = time.perf_counter()
    dump_corpus(args.sources.split(","), parts, args.max_docs, args.grow_mb)
    docs, nbytes = input_bytes(parts)
    print(
        f"corpus      {docs:,} docs, {nbytes / 1e6:.1f} MB of text ({time.perf_counter() - t:.0f} s to dump)"
    )
    print_rules()
    res = {s: measure_side(s, parts, work / s, args.workers) for s in ("ours", "datatrove")}
    print_results(res, docs, nbytes, args.workers)
    ours, theirs = res["ours"]["kept"], res["datatrove"]["kept"]
    print(f"\nkept-set overlap (Jaccard of kept ids): {kept_jaccard(ours, theirs):.4f}")
    groups = disagreements(
        ours,
        theirs,
        lambda ids: our_reasons(parts, list(ids)),
        lambda ids: their_reasons(parts, list(ids)),
    )
    print("largest disagreements (kept by | our reason | datatrove's reason | docs | example):")
    for g in groups:
        print(
            f"  {g.kept_by:9} | {g.our_reason:24} | {g.their_reason:40} | {g.docs:6,} | {g.example}"
        )


def print_rules() -> None:
    print("\nrules (aligned; 'neither' = excluded from both):")
    print(f"  {'rule':40} | {'ours':22} | {'datatrove':42} | applied")
    for rule, ours, theirs, where in RULES:
        print(f"  {rule:40} | {ours:22} | {theirs:42} | {where}")


def print_results(res: dict, docs: int, nbytes: int, workers: int) -> None:
    print(
        f"\n{'side':10} | {'wall s':>8} | {'CPU s':>6} | {'MB/s':>6} | {'docs kept':>10} | {'MB kept':>8} | {'peak RSS MB':>11} | stages"
    )
    for side, r in res.items():
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in r["stages"].items())
        print(
            f"{side:10} | {r['wall_s']:8.1f} | {r['cpu_s']:6.1f} | {nbytes / 1e6 / r['wall_s']:6.2f} | {len(r['kept']):10,} | "
            f"{r['bytes_kept'] / 1e6:8.1f} | {r['rss_mb']:11.0f} | {stages}"
        )
    ratio = res["datatrove"]["wall_s"] / res["ours"]["wall_s"]
    cpu = res["datatrove"]["cpu_s"] / res["ours"]["cpu_s"]
    print(
        f"speedup: ours {ratio:.2f}x datatrove's speed, {cpu:.2f}x less CPU "
        f"({workers} workers each; goal >= 3x)"
    )


def scale_run(args: argparse.Namespace, work: Path) -> None:
    """Our path at 1/8, 1/4, 1/2 and all of `--scale-mb`: time and peak RSS, growth exponents."""
    sizes, walls, rsss = [], [], []
    print(
        f"{'input MB':>9} | {'docs':>9} | {'wall s':>7} | {'MB/s':>6} | {'peak RSS MB':>11} | docs kept"
    )
    for frac in (1 / 8, 1 / 4, 1 / 2, 1):
        parts = work / f"scale-{frac:.3f}"
        dump_corpus(args.sources.split(","), parts, args.max_docs, args.scale_mb * frac)
        docs, nbytes = input_bytes(parts)
        r = measure_side("ours", parts, work / f"ours-{frac:.3f}", args.workers)
        sizes.append(nbytes / 1e6)
        walls.append(r["wall_s"])
        rsss.append(r["rss_mb"])
        print(
            f"{nbytes / 1e6:9.1f} | {docs:9,} | {r['wall_s']:7.1f} | {nbytes / 1e6 / r['wall_s']:6.2f} | "
            f"{r['rss_mb']:11.0f} | {len(r['kept']):,}"
        )
        _remove(parts)
        _remove(work / f"ours-{frac:.3f}")
    print(
        f"growth exponent (log-log slope): time {growth_exponent(sizes, walls):.2f}, "
        f"peak RSS {growth_exponent(sizes, rsss):.2f}  (goal: time <= 1, RSS ~ 0)"
    )


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", default=OFFLINE)
    parser.add_argument("--max-docs", type=int, default=None, help="per source: a smaller corpus")
    parser.add_argument("--grow-mb", type=float, default=0, help="head-to-head on a grown corpus")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale", action="store_true", help="the scale run instead")
    parser.add_argument("--scale-mb", type=float, default=1000)
    parser.add_argument("--side", choices=("ours", "datatrove"), help=argparse.SUPPRESS)
    parser.add_argument("--parts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return side_main(args.side, args.parts, args.out, args.workers, args.result)
    home = Path(os.environ.get("FASTDRAFT_HOME", "artifacts"))
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-data-peers-", dir=home) as tmp:
        (scale_run if args.scale else head_to_head)(args, Path(tmp))


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    main()
