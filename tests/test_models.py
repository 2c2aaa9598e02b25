import pytest
import torch

from feedwise.errors import FeedwiseError
from feedwise.models import build_model


@pytest.mark.parametrize("name,shape", [("mlp", (40,)), ("mlp", (1, 28, 28)), ("simple-cnn", (1, 28, 28)),
                                        ("simple-cnn", (40,)), ("resnet-8", (3, 32, 32))])
def test_models_output_logits(name, shape):
    m = build_model(name, shape, 10)
    assert m(torch.zeros(4, *shape)).shape == (4, 10)


def test_mlp_widths_and_simple_cnn_layout():
    m = build_model("mlp", (40,), 10, widths=(256, 256))
    sizes = [(l.in_features, l.out_features) for l in m if isinstance(l, torch.nn.Linear)]
    assert sizes == [(40, 256), (256, 256), (256, 10)]
    c = build_model("simple-cnn", (1, 28, 28), 10)
    convs = [l for l in c if isinstance(l, torch.nn.Conv2d)]
    assert [(l.out_channels, l.kernel_size) for l in convs] == [(32, (5, 5)), (64, (5, 5))]
    fcs = [l.out_features for l in c if isinstance(l, torch.nn.Linear)]
    assert fcs == [1024, 10]


def test_unknown_model_and_option():
    with pytest.raises(FeedwiseError, match="unknown model"):
        build_model("vgg", (1,), 2)
    with pytest.raises(FeedwiseError, match="has no option depth"):
        build_model("mlp", (4,), 2, depth=3)
