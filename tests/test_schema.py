"""A part's constructor signature is its schema (wiseale.schema): a Literal-annotated argument
is checked when the part is made, from a preset's options, saved parts or a direct call, with
no list of choices to edit."""

from typing import Literal

import pytest
import torch

from wiseale.cli import main
from wiseale.config import RunConfig
from wiseale.errors import WisealeError
from wiseale.methods import METHODS, Method
from wiseale.model import Autoencoder
from wiseale.regularizers import REGULARIZERS, Regularizer
from wiseale.schema import literal_choices
from wiseale.training import load_run, train


@pytest.mark.parametrize("method, option, value, message", [
    ("wise-ale", "scaling", "per-batch",
     "scaling must be one of batch, per-sample (the aggregate_kl regularizer); got 'per-batch'"),
    ("wise-ale", "reconstruction", "approx",
     "reconstruction must be one of sample, exact, mixture (Autoencoder); got 'approx'"),
    ("wae", "kernel", "laplace",
     "kernel must be one of imq, rbf (the mmd regularizer); got 'laplace'"),
    ("cwae", "scales", "many",
     "scales must be one of single, multi (the mmd regularizer); got 'many'"),
    ("dip-vae", "variant", "iii", "variant must be one of i, ii (the dip regularizer); got 'iii'"),
])
def test_a_choice_the_annotation_does_not_allow_is_one_line_and_writes_nothing(
        tmp_path, capsys, method, option, value, message):
    out = tmp_path / "run"
    code = main(["train", "--method", method, "-o", f"{option}={value}", "--data", "sine",
                 "--n-train", "64", "--n-test", "32", "--epochs", "1", "--out", str(out),
                 "--no-progress"])
    assert code != 0 and capsys.readouterr().err.strip().splitlines()[-1] == \
        f"wiseale: error: {message}"
    assert not out.exists()


def test_a_new_regulariser_with_a_literal_argument_is_checked_with_no_list_to_edit(
        tmp_path, monkeypatch, capsys):
    class CodeClip(Regularizer):  # defining it registers it
        name = "code_clip"

        def __init__(self, weight: float = 1.0, norm: Literal["l1", "l2"] = "l2"):
            super().__init__()
            self.weight, self.norm = weight, norm

        def forward(self, post):
            value = post.z.abs().sum(1).mean() if self.norm == "l1" else \
                post.z.square().sum(1).mean()
            return value, self.weight * value

    try:
        assert literal_choices(CodeClip) == {"norm": ("l1", "l2")}
        parts = {"noise": {"name": "none", "args": {}}, "reconstruction": "sample",
                 "likelihood": {"name": "gaussian", "args": {"sigma2": 0.5}},
                 "regularizers": [{"name": "code_clip", "args": {"norm": "l3"}}]}
        config = RunConfig(method="wae", data="sine", n_train=64, n_test=32, epochs=1,
                           batch_size=32, eval_size=32, final_eval="fast", parts=parts)
        with pytest.raises(WisealeError, match="norm must be one of l1, l2 \\(the code_clip "
                                               "regularizer\\); got 'l3'"):
            train(config, tmp_path / "bad", progress=False)
        assert not (tmp_path / "bad" / "config.json").exists()
        parts["regularizers"][0]["args"]["norm"] = "l1"
        train(config, tmp_path / "good", progress=False)
        assert load_run(tmp_path / "good")[0].regularizers[0].norm == "l1"
        with pytest.raises(WisealeError, match="norm must be one of l1, l2"):
            CodeClip(norm="l0")  # a direct call is checked too
        monkeypatch.setitem(METHODS, "clip-ae", Method(  # a preset of it: listed with choices
            "clip-ae", "clipped codes", "-", "none", ("code_clip",), {"weight": 1.0,
                                                                    "norm": "l2"}))
        assert main(["methods", "--choices"]) == 0
        assert "clip-ae: clipped codes [-]; options: weight=1.0, norm=l2 (l1|l2)\n" in \
            capsys.readouterr().out
    finally:
        del REGULARIZERS["code_clip"]


def test_the_choices_are_read_from_the_signatures():
    assert literal_choices(Autoencoder) == {"reconstruction": ("sample", "exact", "mixture")}
    assert literal_choices(REGULARIZERS["aggregate_kl"]) == {"scaling": ("batch", "per-sample")}
    assert literal_choices(REGULARIZERS["kl"]) == {}
    assert literal_choices(torch.nn.Linear) == {}  # any class: none annotated
