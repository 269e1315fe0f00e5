"""`pretrained_draft`: pre-training on text, then continued pre-training on code + text."""

import dagster as dg
from transformers import AutoTokenizer

from fastdraft_dag.assets.common import (
    build_trained,
    result,
    tokenizer_check,
    tokenizer_check_spec,
)
from fastdraft_dag.assets.partitions import TARGETS
from fastdraft_dag.distill.kd_rows import end_of_turn_ids, read_rows, response_token_ids
from fastdraft_dag.resources.hpu_training import HPUTrainingResource
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.training.pretrain import check_draft, pretrain_draft


@dg.asset(
    group_name="training",
    code_version="3",
    deps=["tokenized_shards", "synthetic_kd_dataset", "target_model"],
    partitions_def=TARGETS,
    kinds={"pytorch", "hpu"},
    pool="hpu",
    check_specs=[tokenizer_check_spec("pretrained_draft")],
    description="The draft before alignment, with the target's tokenizer: either a small Llama pre-trained from scratch on text then on a code + text mix (pretrain.init=random), or derived from the target (its embedding, some decoder layers, final norm and head; pretrain.init=target), its head optionally trimmed to the target's most used response tokens (pretrain.draft_vocab, ranked on synthetic_kd_dataset). Training runs through the HPU training resource (a separate process via Dagster Pipes). Resumable: checkpoints live in the artifact's partial directory until it is complete.",
)
def pretrained_draft(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline, hpu: HPUTrainingResource
) -> dg.MaterializeResult:
    target = pipeline.resolve_target(context.partition_key)
    shards = pipeline.store.latest("tokenized_shards", target.key)
    kd = pipeline.store.latest("synthetic_kd_dataset", target.key)
    settings = pipeline.profile.settings("pretrained_draft")
    cfg = settings.pretrain
    check_draft(target.path, cfg)
    lineage = {"tokenized_shards": shards.data_version, "synthetic_kd_dataset": kd.data_version}

    def build(out):
        responses, eot = [], []
        if cfg.draft_vocab is not None:  # the head keeps the target's most used response tokens
            tok = AutoTokenizer.from_pretrained(target.path)
            responses = response_token_ids(read_rows(kd.path / "kd.jsonl")[0], tok)
            eot = end_of_turn_ids(target.path, tok)
        return pretrain_draft(
            target.path,
            target.name,
            shards=shards.path,
            lineage=lineage,
            cfg=cfg,
            threads=settings.threads,
            out=out,
            train=lambda spec, work: hpu.train(context, spec, work),
            responses=responses,
            always_keep=eot,
        ).metrics

    art = build_trained(
        context,
        pipeline,
        target.key,
        backend=hpu.backend,
        inputs={**lineage, "target_model": target.revision},
        build=build,
    )
    m = art.metrics
    return result(
        context,
        art,
        {
            "parameters": m.get("parameters"),
            "val_loss": m.get("val_loss"),
            "tokens_per_s": m.get("tokens_per_s"),
            "mfu": m.get("mfu"),
            "backend": f"{m.get('backend')} x{m.get('world_size', 1)}",
            "tensorboard": dg.MetadataValue.path(str(art.path / "tensorboard")),
            "stages": dg.MetadataValue.json(m.get("stages", [])),
        },
        [tokenizer_check("pretrained_draft", art.path, target.path, target.name)],
    )
