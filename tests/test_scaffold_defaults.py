"""The training defaults ``recipes new`` writes (``lejepa_domains.recipe_tools.defaults``): pure functions of the
data's facts and the device, tested at their edges — tiny and huge data sets, tiny and huge images, 1 and 13
channels, CPU vs GPU — and the recipe text and console output that state them."""

from __future__ import annotations

import math

import pytest

from fixtures_data import imagefolder
from test_failures import cli, one_error_line  # noqa: E402  (the console-script helpers)

from lejepa_domains.recipe_tools import defaults as D
from lejepa_domains.recipe_tools.defaults import DataFacts, DeviceFacts, choose_defaults, parse_device

CPU2 = DeviceFacts("cpu", 2)
CPU16 = DeviceFacts("cpu", 16)
GPU80 = DeviceFacts("cuda", 16, 80.0, "H100")
GPU8 = DeviceFacts("cuda", 8, 8.0, "small")


def test_device_specs_parse_and_bad_ones_are_one_line():
    assert parse_device("cpu:8") == DeviceFacts("cpu", 8)
    assert parse_device("cuda:80").gpu_memory_gb == 80.0 and parse_device("CUDA").kind == "cuda"
    assert parse_device("auto").kind in ("cpu", "cuda") and parse_device(None) == parse_device("auto")
    for bad in ("gpu", "cpu:0", "cuda:-1", "cpu:x", "tpu:4", ""):
        with pytest.raises(D.UserError, match="--for-device"):
            parse_device(bad)


@pytest.mark.parametrize("device", [CPU2, CPU16, GPU8, GPU80])
@pytest.mark.parametrize("n_train", [2, 9, 40, 64, 1_000, 50_000, 10**7])
@pytest.mark.parametrize("side", [4, 8, 15, 25, 32, 64, 256, 4096])
def test_every_rule_gives_a_trainable_setting(device, n_train, side):
    d = choose_defaults(DataFacts(n_train, side), device)
    assert 2 <= d.batch_size <= n_train and d.batch_size & (d.batch_size - 1) == 0  # a power of two SIGReg can test
    assert n_train < 4 * D.BATCH_FLOOR or d.batch_size <= n_train // 4  # at least 4 steps an epoch
    assert d.image_size == max(side, 16)  # images under 16 px are upsampled to 16 (measured on 8-px digits)
    assert d.global_size <= d.image_size and d.local_size < d.global_size and d.local_size >= 1
    if side >= 16:
        assert d.global_size % 8 == 0 and d.local_size % 8 == 0
    assert D.EPOCHS_MIN <= d.epochs <= D.EPOCHS_MAX
    assert max(1, n_train // d.batch_size) * d.epochs <= max(D.STEPS_MAX, D.EPOCHS_MIN * (n_train // d.batch_size))
    assert d.backbone in D.BACKBONE_COST and 0 < d.lr <= 5e-3 and d.estimate_s > 0
    assert set(d.why) >= {"backbone", "views", "view_counts", "batch_size", "lr", "epochs", "num_workers"}
    assert all(isinstance(v, str) and v for v in d.why.values())


def test_tiny_data_sets_warn_and_keep_a_batch_sigreg_can_test():
    d = choose_defaults(DataFacts(9, 32), CPU2)
    assert d.batch_size == 4 and any("below the floor" in n for n in d.notes)
    assert choose_defaults(DataFacts(2, 32), CPU2).batch_size == 2
    assert choose_defaults(DataFacts(40, 32), CPU2).batch_size == D.BATCH_FLOOR  # not 8: BatchNorm on 8 is noise
    with pytest.raises(D.UserError, match="at least 2"):
        choose_defaults(DataFacts(1, 32), CPU2)


def test_cpu_rules_are_the_measured_ones_and_gpu_the_papers():
    cpu = choose_defaults(DataFacts(5_000, 256), CPU2)
    assert (cpu.backbone, cpu.global_size, cpu.local_size, cpu.batch_size) == ("resnet10t", 64, 32, 64)
    for side, views in ((8, (16, 8)), (25, (24, 16)), (40, (40, 24)), (64, (64, 32))):  # the measured table's sets
        d = choose_defaults(DataFacts(1_500, side), CPU2)
        assert (d.global_size, d.local_size) == views and d.image_size == max(side, 16)
    assert cpu.num_workers == 0 and cpu.num_slices == 256 and cpu.proj_hidden == (512, 512)
    assert any("raise global_size" in n for n in cpu.notes)  # the user is told the views are downscaled
    gpu = choose_defaults(DataFacts(50_000, 256), GPU80)
    assert (gpu.backbone, gpu.global_size, gpu.local_size, gpu.batch_size) == ("resnet50", 224, 96, 256)
    assert gpu.num_slices == 1024 and gpu.num_workers == 8 and "not measured" in gpu.why["backbone"]
    assert choose_defaults(DataFacts(50_000, 64), GPU80).backbone == "resnet18"
    assert choose_defaults(DataFacts(50_000, 128), GPU80).backbone == "resnet34"
    assert choose_defaults(DataFacts(50_000, 4096), GPU8).backbone == "resnet34"  # < 24 GiB: no resnet50
    assert choose_defaults(DataFacts(50_000, 256), GPU8).batch_size < 256  # a small GPU gets a smaller batch
    assert choose_defaults(DataFacts(5_000, 64), CPU16).num_workers == 8


def test_epochs_follow_the_time_asked_for_and_the_cost_model():
    facts = DataFacts(5_000, 64)
    d10, d20 = choose_defaults(facts, CPU2, 10), choose_defaults(facts, CPU2, 20)
    assert d20.epochs == pytest.approx(2 * d10.epochs, abs=1)
    one_epoch = 5_000 // d10.batch_size * D.step_seconds(d10.backbone, d10.batch_size, d10.global_size, d10.local_size,
                                                         2, 8, CPU2) + D.CPU_EPOCH_END_S
    assert abs(d10.estimate_s - 600) <= one_epoch / 2 + 1  # whole epochs: off by at most half an epoch
    assert choose_defaults(facts, CPU16, 10).epochs > d10.epochs  # more cores: more steps in the same time
    step = D.step_seconds("resnet10t", 64, 32, 16, 2, 8, CPU2)
    assert D.step_seconds("resnet18", 64, 32, 16, 2, 8, CPU2) > step
    per_view = 64 * 10 * D.CPU_CORE_S_PER_VIEW / 2
    fixed = per_view + D.CPU_STEP_CORE_S / 2  # what does not grow with the views' side
    assert D.step_seconds("resnet10t", 64, 64, 32, 2, 8, CPU2) - fixed == pytest.approx(4 * (step - fixed))
    assert D.step_seconds("resnet10t", 64, 8, 4, 2, 8, CPU2) > 0.8 * per_view  # tiny views: the per-view cost
    # the fit: mean step times of the 3-seed table (README "Scaffold defaults, measured") and the earlier 32/16-px steps
    for cfg, measured in (((16, 24, 16), 0.61), ((64, 16, 8), 1.70), ((64, 40, 24), 2.21), ((64, 64, 32), 3.13),
                          ((32, 64, 32), 1.65), ((64, 32, 16), 1.95)):
        assert D.step_seconds("resnet10t", *cfg, 2, 8, CPU2) == pytest.approx(measured, rel=0.1)
    assert D.step_seconds("resnet10t", 1, 8, 4, 2, 8, CPU2) >= D.CPU_STEP_CORE_S / 2  # a step costs something
    assert choose_defaults(DataFacts(10**7, 64), CPU2, 10).epochs == D.EPOCHS_MIN  # huge data: the floor
    assert choose_defaults(DataFacts(40, 8), CPU2, 600).epochs == D.EPOCHS_MAX  # tiny data, long run: the cap
    with pytest.raises(D.UserError, match="--minutes"):
        choose_defaults(facts, CPU2, 0)


@pytest.mark.parametrize("channels", [1, 3, 13])
def test_channels_and_value_types_change_notes_not_the_arithmetic(channels):
    d = choose_defaults(DataFacts(2_000, 32, channels, "uint16" if channels == 13 else "uint8"), CPU2)
    base = choose_defaults(DataFacts(2_000, 32), CPU2)
    assert (d.backbone, d.batch_size, d.epochs, d.global_size) == (base.backbone, base.batch_size, base.epochs,
                                                                   base.global_size)
    assert any("13 channels" in n for n in d.notes) == (channels == 13)


def test_imbalanced_classes_are_said():
    d = choose_defaults(DataFacts(2_000, 32, class_counts=(1_800, 150, 50)), CPU2)
    assert any("imbalanced" in n and "36" in n for n in d.notes)
    assert not any("imbalanced" in n for n in choose_defaults(DataFacts(2_000, 32, class_counts=(900, 1100)),
                                                              CPU2).notes)


def test_recipes_new_writes_the_rules_and_says_them(tmp_path):
    data = imagefolder(tmp_path / "d", {"train": 120, "test": 20}, size=40, channels=3)
    code, out, err = cli("recipes", "new", "forty", "--data", str(data), "--out", str(tmp_path / "o"),
                         "--for-device", "cpu:2", "--minutes", "4", env={"COLUMNS": "120"})
    assert code == 0, err
    text = (tmp_path / "o" / "forty.py").read_text()
    d = choose_defaults(DataFacts(108, 40, 3), DeviceFacts("cpu", 2), 4)  # 120 train, 10 % carved for val
    for line in (f"backbone={d.backbone!r}", f"global_size={d.global_size},", f"local_size={d.local_size},",
                 f"epochs={d.epochs}, batch_size={d.batch_size}, lr={d.lr:g}", "# epochs: ~4 min on this device",
                 "# training defaults for CPU, 2 cores"):
        assert line in text, line
    said = " ".join((out + err).split())
    assert "training defaults for CPU, 2 cores" in said and "estimated training time" in said
    code, out, err = cli("recipes", "new", "again", "--data", str(data), "--out", str(tmp_path / "o"),
                         "--for-device", "gpu:4")
    assert code == 2 and "--for-device 'gpu:4'" in one_error_line(err)
    assert not (tmp_path / "o" / "again.py").exists()
    code, out, err = cli("recipes", "new", "again", "--data", str(data), "--out", str(tmp_path / "o"),
                         "--minutes", "0")
    assert code == 2 and "--minutes must be > 0" in one_error_line(err)
    assert not math.isnan(d.estimate_s)
