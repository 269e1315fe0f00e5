"""`pretrained_draft`: pre-training on text, then continued pre-training on code + text."""

import shutil

import dagster as dg

from fastdraft_dag.assets.common import (
    TARGETS,
    build_artifact,
    result,
    tokenizer_check,
    tokenizer_check_spec,
)
from fastdraft_dag.draft.config import derive_draft_config, init_draft
from fastdraft_dag.reporting.model_card import write_model_card
from fastdraft_dag.resources.hpu_training import HPUTrainingResource
from fastdraft_dag.resources.pipeline import FastDraftPipeline


@dg.asset(
    group_name="training",
    code_version="2",
    deps=["tokenized_shards", "target_model"],
    partitions_def=TARGETS,
    kinds={"pytorch", "hpu"},
    pool="hpu",
    tags={"dagster/max_runtime": str(24 * 3600)},
    check_specs=[tokenizer_check_spec("pretrained_draft")],
    description="A small Llama-style draft with the target's vocabulary and tokenizer, pre-trained from scratch on text then on a code + text mix, through the HPU training resource (a separate process via Dagster Pipes). Resumable: checkpoints live in the artifact's partial directory until it is complete.",
)
def pretrained_draft(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline, hpu: HPUTrainingResource
) -> dg.MaterializeResult:
    target = pipeline.resolve_target(context.partition_key)
    shards = pipeline.store.latest("tokenized_shards", target.key)
    cfg = pipeline.profile.pretrain
    derive_draft_config(target.path, cfg.draft)  # an invalid draft fails here, before any training

    def build(out):
        init_dir = out / "_init"
        sizes = init_draft(
            target.path, cfg.draft, init_dir, seed=cfg.seed, init_embeddings=cfg.init_embeddings
        )
        spec = {
            "init_dir": str(init_dir),
            "out_dir": str(out),
            "seed": cfg.seed,
            "dtype": cfg.dtype,
            "stages": [
                s.to_spec({"kind": "packed", "root": str(shards.path), "mix": s.mix})
                for s in cfg.stages
            ],
        }
        metrics = hpu.train(context, spec, out / "_work")  # checkpoints: out/_checkpoints
        for scratch in (init_dir, out / "_work", out / "_checkpoints"):
            shutil.rmtree(scratch, ignore_errors=True)
        metrics = {**sizes, **metrics}
        write_model_card(
            out,
            "Pretrained FastDraft draft",
            target.name,
            metrics,
            {"tokenized_shards": shards.data_version},
        )
        return metrics

    art = build_artifact(
        context,
        pipeline,
        target.key,
        config={**pipeline.profile.section("pretrain"), "backend": hpu.backend},
        inputs={"tokenized_shards": shards.data_version, "target_model": target.revision},
        build=build,
        resumable=True,  # a killed run leaves .<version>.partial/_checkpoints; a rerun resumes
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
