"""The cluster recipes in deploy/: the KubeRay manifest is a RayJob that runs gsa-nas, the SLURM
script is valid bash that starts Ray and the driver."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_kuberay_manifest_is_a_rayjob_running_gsa_nas_with_a_secret_password():
    doc = yaml.safe_load((DEPLOY / "kuberay-rayjob.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    assert doc["spec"]["entrypoint"].startswith("gsa-nas run ")
    head = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert [e["name"] for e in head["env"]] == ["PGPASSWORD"] and "secretKeyRef" in head["env"][0]["valueFrom"]
    workers = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert workers["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert ":" not in doc["spec"]["entrypoint"].split("postgresql+psycopg://", 1)[1].split("@", 1)[0]  # no password


def test_slurm_script_is_valid_bash_that_runs_gsa_nas():
    script = DEPLOY / "slurm.sbatch"
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    text = script.read_text()
    assert "ray start --head" in text and "ray start --address" in text and "gsa-nas run" in text
    assert "ray stop" not in text
