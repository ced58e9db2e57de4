"""The training Jobs run commands the trainer (and torchrun) accept, on a rendezvous that resolves."""

from __future__ import annotations

import pytest
from torch.distributed.run import get_args_parser as torchrun_parser

from tests.deploy.manifests import Doc, one
from training.train import get_args_parser


def test_the_single_gpu_job_parses(rendered: dict[str, list[Doc]]) -> None:
    container = one(rendered["training/single-gpu"], "Job")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "training.train"]
    args = get_args_parser().parse_args(container["args"])
    assert args.resume == "auto", "a retried pod must continue the run, not refuse its output folder"
    assert args.output_dir.startswith("/weights/"), "outputs go to the weights volume"


def test_the_multi_node_job_parses_and_its_rendezvous_resolves(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["training/multi-node"]
    job, service = one(docs, "Job"), one(docs, "Service")
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["torchrun"]
    launch = torchrun_parser().parse_args(container["args"])
    assert launch.module and launch.training_script == "training.train"
    args = get_args_parser().parse_args(launch.training_script_args)
    assert args.resume == "auto" and args.output_dir.startswith("/weights/")
    # One pod per node, as many as torchrun expects, each with all the node's GPUs.
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == int(launch.nnodes)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == int(launch.nproc_per_node)
    # Pod 0 hosts the c10d store at <job>-0.<headless service>, which exists only with these three set.
    host, port = launch.rdzv_endpoint.rsplit(":", 1)
    assert host == f"{job['metadata']['name']}-0.{service['metadata']['name']}"
    assert pod["subdomain"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": job["metadata"]["name"]}
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    assert launch.rdzv_backend == "c10d" and int(launch.max_restarts) > 0


def test_a_bad_trainer_flag_is_caught() -> None:
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--data-dir=/data", "--output-dir=/o", "--amp=fp8"])
