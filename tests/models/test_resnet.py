"""The registry ResNet: size, shapes, tracing, rebuild; an unregistered copy end to end."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from sparsenet.checkpoint import load_model, save_model
from sparsenet.errors import SparsenetError
from sparsenet.models import ResNet, build_model, count_weights, model_for_dataset
from sparsenet.prune import prune, sparsity_report
from sparsenet.training import TrainConfig, evaluate, fit


def conv_linear_weights(model):
    return sum(
        m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    )


def test_weight_count_and_layout():
    m = build_model("resnet")
    # stem 9·16; stage1 4·9·16² + 16² (projection); stage2 9·16·32 + 3·9·32² + 16·32;
    # stage3 9·32·80 + 3·9·80² + 32·80; fc 80·10
    expected = 144 + (4 * 2304 + 256) + (4608 + 3 * 9216 + 512) + (23040 + 3 * 57600 + 2560) + 800
    assert count_weights(m) == conv_linear_weights(m) == expected == 241_584
    assert 200_000 <= expected <= 300_000
    assert all(c.bias is None for c in m.modules() if isinstance(c, nn.Conv2d))
    assert m.arch == {"name": "resnet", "kwargs": {"in_channels": 1, "num_classes": 10,
                                                   "widths": [16, 32, 80], "blocks": [2, 2, 2]}}
    x = torch.rand(2, 1, 28, 28)
    assert m.stage3(m.stage2(m.stage1(m.stem(x)))).shape == (2, 80, 4, 4)
    assert m(x).shape == (2, 10)


@pytest.mark.parametrize("train", [False, True])
def test_fx_trace_equals_eager(train):
    m = build_model("resnet", seed=0).train(train)
    g = torch.fx.symbolic_trace(m)
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(0)
    assert torch.equal(g(x), a)


def test_checkpoint_rebuilds_and_seed_fixes_weights(tmp_path):
    a, b = build_model("resnet", seed=3), build_model("resnet", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    save_model(a.eval(), tmp_path / "r.pt")
    c, _ = load_model(tmp_path / "r.pt")
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(a(x), c.eval()(x))


def test_small_inputs_and_bad_sizes():
    m = model_for_dataset("resnet", (3, 8, 8), 5)
    assert m(torch.rand(2, 3, 8, 8)).shape == (2, 5)
    with pytest.raises(SparsenetError, match="resnet"):
        ResNet(widths=(16, 32))
    with pytest.raises(SparsenetError, match="resnet"):
        ResNet(num_classes=1)


class MiniResNet(nn.Module):
    """Unregistered: a stem and one strided residual block with a projection shortcut."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(1, 8, 3, padding=1, bias=False), bn=nn.BatchNorm2d(8), relu=nn.ReLU()))
        self.conv1 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.short = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        h = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.fc(self.pool(self.relu2(h + self.short(x))).flatten(1))


def test_unregistered_resnet_end_to_end(digits_data):
    """Train, OBD-prune (Gauss–Newton fall-back), evaluate: masks hold, accuracy sane."""
    torch.manual_seed(0)
    model = MiniResNet()
    torch.fx.symbolic_trace(model)
    xtr, ytr = digits_data.train
    fit(model, (xtr, ytr), TrainConfig(epochs=6, batch_size=64, lr=0.05, quiet=True))
    before = evaluate(model, digits_data.test)["accuracy"]
    assert before > 0.6
    prune(model, "obd", sparsity=0.3, data=(xtr[:40], ytr[:40]))
    assert abs(sparsity_report(model)["sparsity"] - 0.3) < 0.01
    after = evaluate(model, digits_data.test)["accuracy"]
    assert after > before - 0.2
