"""`pretrained_draft`: pre-training on text, then continued pre-training on code + text."""

import dagster as dg

from fastdraft_dag.assets.common import (
    build_artifact,
    result,
    tokenizer_check,
    tokenizer_check_spec,
)
from fastdraft_dag.assets.partitions import TARGETS
from fastdraft_dag.resources.hpu_training import HPUTrainingResource
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.training.pretrain import check_draft, pretrain_draft


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
    settings = pipeline.profile.settings("pretrained_draft")
    check_draft(target.path, settings.pretrain)

    def build(out):
        return pretrain_draft(
            target.path, target.name, shards.path, shards.data_version, settings.pretrain,
            settings.threads, out, lambda spec, work: hpu.train(context, spec, work),
        ).metrics  # fmt: skip

    art = build_artifact(
        context,
        pipeline,
        target.key,
        config={**pipeline.profile.version_config("pretrained_draft"), "backend": hpu.backend},
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
