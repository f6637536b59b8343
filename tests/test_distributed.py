"""DDP on CPU (gloo, 2 processes): one trainer step equals one process on the same global batch."""

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from lejepa_domains import pretrain

# A BatchNorm-free ViT with a LayerNorm projector: with BatchNorm, per-rank batch statistics would differ from the
# global batch's by design, so exact equality is only defined without it. λ = 0.5 makes SIGReg's share of the
# gradient large, so a wrong reduction of its ECF moments shows.
RECIPE = str(Path(__file__).parent / "recipes" / "tinyvit.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo", NO_ALBUMENTATIONS_UPDATE="1")
    torch.set_num_threads(1)
    import lejepa_domains.train.loop as T  # the loop calls the step through this module's name

    seen = {}
    real_step = T.train_step

    def spy(model, *a, **k):  # keep this rank's weights after the step
        m = real_step(model, *a, **k)
        seen["weights"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return m

    T.train_step = spy
    res = pretrain(RECIPE, out=out, device="cpu", progress=False, batch_size=16 // world, max_steps=1, epochs=2)
    torch.save({"final": res.final, "weights": seen["weights"]}, Path(out).parent / f"rank{rank}.pt")


def _grads(ck: dict) -> list[torch.Tensor]:
    # After Adam's first step exp_avg = (1 − β1) · grad exactly: the checkpoint holds the step's gradients.
    beta1 = ck["opt"]["param_groups"][0]["betas"][0]
    return [s["exp_avg"] / (1 - beta1) for _, s in sorted(ck["opt"]["state"].items())]


def test_two_gloo_processes_equal_one_process_on_the_global_batch(tmp_path):
    single = pretrain(RECIPE, out=tmp_path / "single", device="cpu", progress=False, batch_size=16, max_steps=1,
                      epochs=2)
    ddp_out = tmp_path / "ddp" / "run"
    ddp_out.parent.mkdir()
    mp.start_processes(_worker, args=(2, _free_port(), str(ddp_out)), nprocs=2, join=True, start_method="spawn")
    ck1 = torch.load(single.run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    ck2 = torch.load(ddp_out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ck1["step"] == ck2["step"] == 1
    g1, g2 = _grads(ck1), _grads(ck2)
    assert len(g1) == len(g2) > 10
    scale = max(float(g.abs().max()) for g in g1)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5 * scale)
    r0 = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "ddp" / "rank1.pt", weights_only=False)
    # loss and SIGReg figures of the global batch, as in one process (SIGReg sees all ranks' samples)
    assert r0["final"]["sigreg"] == pytest.approx(single.final["sigreg"], rel=1e-4)
    assert r0["final"]["loss"] == pytest.approx(single.final["loss"], rel=1e-4)
    assert r1["final"]["loss"] == r0["final"]["loss"]
    # both ranks hold identical weights after the step
    for k, v in r0["weights"].items():
        assert torch.equal(v, r1["weights"][k]), k
    assert int(ck2["loss"]["sigreg.step"]) == 1
