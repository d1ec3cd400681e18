"""Stages generate, ingest, validate and split."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from waferflow.config import Params
from waferflow.data.ingest import IngestReport, ingest
from waferflow.data.records import SCHEMA, read_frame, table_to_records, write_records
from waferflow.data.split import resize_frame, split_counts, split_frame
from waferflow.data.validation import validate_frame, write_validation_outputs
from waferflow.stages.layout import Layout, write_json
from waferflow.synth.dataset import generate_dataset
from waferflow.viz import save_gallery

__all__ = ["generate", "ingest_stage", "validate", "split"]


def generate(params: Params, layout: Layout = Layout(), progress: bool = True) -> dict:
    """Generate the default data set: labeled pool, unlabeled pool, fixed test set, gallery."""
    sets = generate_dataset(params.synth, progress=progress)
    counts = {}
    for name, records in sets.items():
        write_records(records, layout.generated / f"{name}.parquet")
        counts[name] = {"total": len(records), **dict(sorted(Counter(
            r.label or r.attrs.get("true_label", "unlabeled") for r in records).items()))}
    save_gallery(sets["labeled"], layout.figures / "generated_gallery.png", per_class=params.synth.gallery_per_class,
                 title="generated wafer maps (labeled pool) with defect masks")
    write_json(layout.metrics / "generate.json", counts)
    return counts


def ingest_stage(params: Params, layout: Layout = Layout(), sources: list[str] | None = None,
                 progress: bool = True) -> IngestReport:
    """Ingest every configured source into the canonical table; rejects to quarantine."""
    srcs = sources if sources is not None else [str(layout / s) for s in params.ingest.sources]
    report = ingest(srcs, layout.ingested, layout.quarantine / "ingest", layout.reports / "ingest.json",
                    options=params.ingest.parser_options(), progress=progress)
    if report.records == 0:
        raise RuntimeError(f"ingest produced no wafers from {srcs}; see {layout.quarantine / 'ingest/rejects.csv'}")
    return report


def validate(params: Params, layout: Layout = Layout()) -> dict:
    """Run the great-expectations suite; keep valid wafers, quarantine the rest."""
    frame = read_frame(layout.ingested)
    cfg = params.validate_.config()
    outcome = validate_frame(frame, cfg)
    return write_validation_outputs(outcome, cfg, layout.validated, layout.quarantine / "validate",
                                    layout.reports / "validation")


def split(params: Params, layout: Layout = Layout(), progress: bool = True) -> dict:
    """Give annotator labels (``waferflow label import``) to their wafers, resize to the model
    size and split train / val / test / unlabeled."""
    from waferflow.active.labels import apply_labels

    cfg = params.split_config()
    frame, al_counts = apply_labels(read_frame(layout.validated), layout.resolve(params.al.labels_dir))
    frame = resize_frame(frame, cfg.image_size, progress=progress)
    parts = split_frame(frame, cfg)
    for name, part in parts.items():
        write_records(pa.Table.from_pandas(part[SCHEMA.names], schema=SCHEMA, preserve_index=False),
                      layout.processed / f"{name}.parquet")
    counts = {**split_counts(parts), "annotator_labels": al_counts}
    write_json(layout.metrics / "split.json", counts)
    train_sample = table_to_records(parts["train"].groupby("label", group_keys=False).head(6))
    save_gallery(train_sample, layout.figures / "split_gallery.png", per_class=6,
                 title=f"training split as the model sees it ({cfg.image_size[0]}x{cfg.image_size[1]})")
    return counts


