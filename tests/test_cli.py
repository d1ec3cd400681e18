import subprocess
import sys

import boto3
import pandas as pd
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from tests.data.test_parsers import CSV, lswmd_frame
from waferflow.cli import app
from waferflow.data.records import read_records, write_records

runner = CliRunner()


def test_help_lists_the_stages():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("generate", "ingest", "validate", "split", "info", "gallery", "remote"):
        assert cmd in result.output


def test_ingest_files_to_a_table_then_info_and_gallery(tmp_path, small_records):
    lswmd_frame().to_pickle(tmp_path / "LSWMD.pkl")
    (tmp_path / "dies.csv").write_text(CSV)
    out = tmp_path / "t.parquet"
    result = runner.invoke(
        app,
        [
            "ingest",
            str(tmp_path / "LSWMD.pkl"),
            str(tmp_path / "dies.csv"),
            "--out",
            str(out),
            "--quarantine",
            str(tmp_path / "q"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ingested 6 wafers from 2 file(s); rejected 2" in result.output
    assert len(read_records(out)) == 6
    info = runner.invoke(app, ["info", str(out)])
    assert "6 wafers, 4 lots" in info.output and '"Edge-Ring": 1' in info.output
    write_records(small_records, tmp_path / "s.parquet")
    gal = runner.invoke(app, ["gallery", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "g.png")])
    assert gal.exit_code == 0 and (tmp_path / "g.png").stat().st_size > 10_000


def test_ingest_missing_file_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["ingest", str(tmp_path / "nope.pkl"), "--out", str(tmp_path / "o.parquet")])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_adhoc_ingest_quarantines_beside_its_output_and_refuses_a_folder_as_out(tmp_path, monkeypatch):
    from tests.conftest import PROJECT_ROOT

    monkeypatch.chdir(tmp_path)
    pipeline_rejects = tmp_path / "data/quarantine/ingest/rejects.csv"
    pipeline_rejects.parent.mkdir(parents=True)
    pipeline_rejects.write_text("the pipeline's own rejects\n")
    (tmp_path / "dies.csv").write_text(CSV)
    params = ["--params", str(PROJECT_ROOT / "params.yaml")]
    result = runner.invoke(app, ["ingest", "dies.csv", "--out", "adhoc/t.parquet", *params])
    assert result.exit_code == 0, result.output
    assert pipeline_rejects.read_text() == "the pipeline's own rejects\n"
    assert len(pd.read_csv(tmp_path / "adhoc/t.quarantine/rejects.csv")) == 2
    folder = runner.invoke(app, ["ingest", "dies.csv", "--out", "adhoc", *params])
    assert folder.exit_code == 1 and "is a folder" in folder.output and folder.exception is not None
    assert isinstance(folder.exception, SystemExit)


@pytest.fixture
def dvc_repo(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text("storage: {dvc_s3_url: 's3://team-bucket/dvc'}\n")
    monkeypatch.chdir(tmp_path)
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("WAFERFLOW_DVC_S3_URL", raising=False)
    return tmp_path


def test_remote_s3_checks_the_bucket_with_boto3_and_writes_local_dvc_config(dvc_repo):
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="team-bucket")
        ok = runner.invoke(app, ["remote", "s3"])
        missing = runner.invoke(app, ["remote", "s3", "s3://no-such-bucket/x"])
    assert ok.exit_code == 0, ok.output
    local = (dvc_repo / ".dvc" / "config.local").read_text()
    assert "s3://team-bucket/dvc" in local and "remote = s3" in local
    assert "s3://team-bucket" not in (dvc_repo / ".dvc" / "config").read_text()
    assert missing.exit_code == 1 and "no-such-bucket" in missing.output
    bad = runner.invoke(app, ["remote", "s3", "http://x"])
    assert bad.exit_code == 1 and "not an S3 URL" in bad.output


def test_stage_commands_run_in_pipeline_order_and_fail_clearly(tmp_path):
    help_text = runner.invoke(app, ["--help"]).output
    order = [help_text.index(f" {c} ") for c in ("generate", "ingest", "validate", "split", "train", "evaluate")]
    assert order == sorted(order)
    result = runner.invoke(app, ["split", "--params", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "stage split failed" in result.output and "nope.yaml" in result.output
