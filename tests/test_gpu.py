"""The CUDA paths of training: bf16, peak memory, out of memory, determinism, several GPUs.

They need a CUDA GPU and are skipped without one (the CPU paths are tested in test_train.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from test_train import GREEDY_MODEL, configure, log, same_weights, weights

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_training_on_cuda_uses_bf16_and_records_the_gpu(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, train__device="cuda")
    result = cli("train")
    assert result.code == 0, result.err
    found = log()
    assert found["device"].startswith("cuda")
    assert found["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert found["peak_memory_bytes"] > 0
    assert found["environment"]["cuda"] == torch.version.cuda
    assert found["environment"]["device_name"] == torch.cuda.get_device_name(0)
    for command in ("export", "evaluate"):  # the model trained on the GPU exports and passes parity
        assert cli(command).code == 0


def test_deterministic_cuda_training_repeats_exactly(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, train__device="cuda", train__deterministic=True)
    assert cli("train").code == 0
    first = weights()
    assert cli("train").code == 0
    assert same_weights(first, weights())


def test_gpu_out_of_memory_is_exit_4_with_the_peak(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.py").write_text(GREEDY_MODEL)
    configure(repo, model={"factory": "model.py:build"}, train__device="cuda")
    result = cli("train")
    assert result.code == 4
    assert "training ran out of GPU memory" in result.err
    assert log()["status"] == "out_of_memory"
    assert log()["peak_memory_bytes"] > 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_with_nccl(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    configure(repo, train__device="cuda")
    result = cli("train", "--nproc", "2")
    assert result.code == 0, result.err
    assert log()["processes"] == 2
