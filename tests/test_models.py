"""The model zoo: every registered model's shapes and gradients (random tensors: these run without the
datasets), its training on real digits, the registry and the classic LeNet-5."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.errors import ModelError
from digitlab.models import create_model, init_weights, list_models, model_info

ALL_MODELS = list_models()


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> normalised float (N, 1, 28, 28), MNIST mean/std."""
    return ((images.float() / 255 - 0.1307) / 0.3081).unsqueeze(1)


def noise(n: int, channels: int = 1) -> torch.Tensor:
    """(n, channels, 28, 28) standard-normal input, like normalised digits in scale; the same each call."""
    return torch.randn(n, channels, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def digits(mnist_small) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = mnist_small
    return to_input(images), labels


def test_the_zoo_has_the_required_models():
    assert set(ALL_MODELS) >= {"lenet5", "lenet5-improved", "rescnn", "lenet-attention", "mobilenetv3-small",
                               "alexnet", "vgg16", "resnet18"}


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("in_channels,num_classes", [(1, 10), (1, 5), (3, 10)])
def test_output_shape(name, in_channels, num_classes):
    torch.manual_seed(0)
    x = noise(4, in_channels)
    model = create_model(name, in_channels=in_channels, num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (4, num_classes)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_is_head_of_features(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = noise(4)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.dim() == 4  # a feature map (B, C, H, W), pooled by the head
        torch.testing.assert_close(model.forward_head(features), model(x))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    x, y = noise(8), torch.arange(8) % 10
    F.cross_entropy(model(x), y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_trains_on_real_digits(name, digits):
    """One pass of Adam over 256 real digits: every parameter gets a finite gradient and the loss
    on the first batch goes down."""
    torch.manual_seed(0)
    x, y = digits[0][:256], digits[1][:256]
    model = create_model(name).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def probe_loss() -> torch.Tensor:
        torch.manual_seed(1234)  # the same dropout masks before and after training
        return F.cross_entropy(model(x[:64]), y[:64])

    with torch.no_grad():
        initial = probe_loss().item()
    for step, i in enumerate(range(0, len(x), 32)):
        logits = model(x[i:i + 32])
        assert torch.isfinite(logits).all()
        loss = F.cross_entropy(logits, y[i:i + 32])
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            for pname, p in model.named_parameters():
                assert p.grad is not None, f"{pname} got no gradient"
                assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
                assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"
        opt.step()
    with torch.no_grad():
        final = probe_loss().item()
    assert final < initial, f"{name}: loss {initial:.4f} -> {final:.4f} after one pass"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_info_counts_params_and_macs(name):
    info = model_info(name)
    model = create_model(name)
    assert info.name == name and info.description and info.reference
    assert info.params == sum(p.numel() for p in model.parameters())
    assert 10_000 < info.params < 5_000_000  # small enough to train on a CPU
    assert 100_000 < info.macs < 200_000_000


def test_lenet5_params_and_macs_are_exact():
    info = model_info("lenet5")
    # conv1 6*(25+1) + conv2 16*(6*25+1) + fc 400*120+120 + 120*84+84 + 84*10+10
    assert info.params == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706
    # conv1 6*28*28*25 + conv2 16*10*10*150 + fc 400*120 + 120*84 + 84*10
    assert info.macs == 117_600 + 240_000 + 58_920 == 416_520


def test_lenet5_is_the_published_architecture():
    model = create_model("lenet5")
    layers = [m for m in model.modules() if not isinstance(m, (nn.Sequential, type(model)))]
    summary = []
    for m in layers:
        if isinstance(m, nn.Conv2d):
            summary.append(("conv", m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding))
        elif isinstance(m, nn.AvgPool2d):
            summary.append(("avgpool", m.kernel_size, m.stride))
        elif isinstance(m, nn.Linear):
            summary.append(("fc", m.in_features, m.out_features))
        else:
            summary.append((type(m).__name__,))
    assert summary == [
        ("conv", 1, 6, (5, 5), (1, 1), (2, 2)), ("Sigmoid",), ("avgpool", 2, 2),
        ("conv", 6, 16, (5, 5), (1, 1), (0, 0)), ("Sigmoid",), ("avgpool", 2, 2),
        ("Flatten",),
        ("fc", 400, 120), ("Sigmoid",),
        ("fc", 120, 84), ("Sigmoid",),
        ("fc", 84, 10),
    ]


def test_lenet5_improved_has_spp_and_honours_its_kwargs():
    model = create_model("lenet5-improved")
    assert model.head[0].in_features == 32 * (16 + 4 + 1) == 672
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert isinstance(model.head[-2], nn.Dropout) and model.head[-2].p == 0.5
    leaky = create_model("lenet5-improved", channels=16, act="leaky_relu", dropout=0.3)
    assert leaky.head[0].in_features == 16 * 21
    assert any(isinstance(m, nn.LeakyReLU) for m in leaky.modules())
    assert not any(isinstance(m, nn.ReLU) for m in leaky.modules())


def test_lenet_attention_masks_its_features():
    from digitlab.models.layers import SpatialAttention

    model = create_model("lenet-attention").eval()
    attention = model.features[-1]
    assert isinstance(attention, SpatialAttention)
    with torch.no_grad():
        nn.init.constant_(attention.mask.weight, 0.0)
        nn.init.constant_(attention.mask.bias, -100.0)  # sigmoid(-100) ~ 0: everything masked out
        assert model.forward_features(noise(2)).abs().max() < 1e-6


def test_kwargs_survive_a_json_round_trip():
    # checkpoints store model args as JSON, which turns tuples into lists
    assert create_model("lenet-attention", channels=[16, 32]).features[3].out_channels == 32
    assert create_model("rescnn", stages=[16, 32]).fc.in_features == 32
    assert create_model("lenet5-improved", hidden=[64], bins=[2, 1]).head[0].in_features == 32 * 5


def test_baseline_width_kwargs():
    assert create_model("resnet18", width=16).fc.in_features == 128
    assert create_model("vgg16", width=0.5).head[1].out_features == 2048
    assert not any(isinstance(m, nn.BatchNorm2d) for m in create_model("vgg16", batch_norm=False).modules())
    assert create_model("alexnet", width=0.5).head[2].out_features == 2048
    assert model_info("mobilenetv3-small", width_mult=0.5).params < model_info("mobilenetv3-small").params


def test_fastcnn_stages_depth_and_dropout():
    deep = create_model("fastcnn", channels=[32, 64, 128, 256], depth=2, dropout=0.2)
    convs = [m for m in deep.features.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 1] * 4 and convs[-1].out_channels == 256
    assert isinstance(deep.head[1], nn.Dropout) and deep.head[1].p == 0.2
    assert deep(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert not any(isinstance(m, nn.Dropout) for m in create_model("fastcnn").modules())
    with pytest.raises(ModelError, match="depth"):
        create_model("fastcnn", depth=0)


def test_fastcnn_stem_runs_at_full_resolution():
    model = create_model("fastcnn", channels=[8, 16], stem=2, first_kernel=3)
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [(1, 8, 1), (8, 8, 1), (8, 8, 2),
                                                                             (8, 16, 2)]
    assert model.features[:2](torch.zeros(1, 1, 28, 28)).shape == (1, 8, 28, 28)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ModelError, match="stem"):
        create_model("fastcnn", stem=-1)


def test_unknown_model_suggests_a_close_name():
    with pytest.raises(ModelError, match="lenet5") as e:
        create_model("lenet")
    assert "did you mean" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModelError, match="resnet18"):
        model_info("resnet-18")


def test_bad_kwargs_raise_one_line_model_errors():
    with pytest.raises(ModelError, match="'dropuot'") as e:
        create_model("rescnn", dropuot=0.1)
    assert "dropout" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModelError, match="takes no argument"):
        create_model("lenet5", channels=8)
    with pytest.raises(ModelError, match="activation"):
        create_model("lenet5-improved", act="gelu")
    with pytest.raises(ModelError, match="channels"):
        create_model("lenet-attention", channels=(8, 16, 32))
    with pytest.raises(ModelError, match="num_classes"):
        create_model("lenet5", num_classes=0)
    with pytest.raises(ModelError):
        create_model("vgg16", width="wide")


def test_list_models_filters_by_pattern():
    assert list_models("lenet*") == ["lenet-attention", "lenet5", "lenet5-improved"]
    assert list_models("nothing*") == []
    assert list_models() == sorted(list_models())


def test_init_weights():
    torch.manual_seed(0)
    model = create_model("lenet5")
    before = model.head[1].weight.clone()
    init_weights(model, "default")
    assert torch.equal(model.head[1].weight, before)
    init_weights(model, "xavier")
    assert not torch.equal(model.head[1].weight, before)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert torch.all(m.bias == 0)
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            assert m.weight.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5
    with pytest.raises(ModelError, match="xavier"):
        init_weights(model, "he")


def test_rescnn_is_xavier_initialised():
    model = create_model("rescnn")
    convs_and_fcs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(m.bias is None or torch.all(m.bias == 0) for m in convs_and_fcs)
    assert torch.all(model.fc.bias == 0)


def test_rescnn_defaults_are_the_cheap_residual_network():
    # stride-2 stem, stages 24/48/96 at 14, 7, 4 pixels: ~6.5x fewer MACs than the former stride-1 32/64/128
    from digitlab.models.layers import ResidualBlock

    info = model_info("rescnn")
    assert info.params == 173_842 and info.macs == 5_720_352
    model = create_model("rescnn").eval()
    assert model.forward_features(noise(2)).shape == (2, 96, 4, 4)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert [isinstance(b.shortcut, nn.Identity) for b in blocks] == [True, False, False]  # 1x1 where shapes change
    assert model.head_drop.p == 0.3
    former = model_info("rescnn", stages=[32, 64, 128], stem_stride=1)  # still reachable by its arguments
    assert former.params == 308_074 and former.macs == 37_156_608
    assert model_info("resnet18").macs == 114_064_384  # shares the ResNet class; its stem stays at stride 1
    with pytest.raises(ModelError, match="stem_stride"):
        create_model("rescnn", stem_stride=3)


def test_every_saved_network_is_registered_by_kind():
    from digitlab.models import model_kind

    assert "line-reader" not in ALL_MODELS and "ensemble" not in ALL_MODELS  # classifiers only by default
    assert set(list_models(kind=None)) == set(ALL_MODELS) | {"line-reader", "ensemble"}
    assert model_kind("line-reader") == "line" and model_kind("ensemble") == "ensemble"
    reader = create_model("line-reader", width=16, hidden=8).eval()
    with torch.no_grad():
        out = reader(torch.zeros(2, 1, 32, 40))
    assert out.shape == (10, 2, 11)  # (W / 4 frames, N, 10 digits + blank)
    tall = create_model("line-reader", width=16, hidden=8, height=48).eval()
    with torch.no_grad():
        assert tall(torch.zeros(1, 1, 48, 40)).shape == (10, 1, 11)  # a field reader's taller image, same frames
    with pytest.raises(ModelError, match="pixels high"):
        create_model("line-reader", height=50)
    pair = create_model("ensemble", members=[{"model": "lenet5"}, {"model": "fastcnn"}]).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(pair(x), (pair.members[0](x) + pair.members[1](x)) / 2)
    with pytest.raises(ModelError, match="not a 28x28 classifier"):
        model_info("line-reader")


def test_fedavg_cnn_has_the_papers_parameter_count():
    # McMahan et al. 2017: "a total of 1,663,370 parameters"
    assert sum(p.numel() for p in create_model("fedavg-cnn").parameters()) == 1_663_370
