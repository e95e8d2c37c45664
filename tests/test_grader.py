"""``twinnet check``: correct student submissions pass in every built-in convention, and each planted
bug (tests/students/bugs, one realistic mistake each) is caught and named in the table."""

import ast
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from twinnet import TwinnetError
from twinnet.cli import main
from twinnet.grader import grade, resolve_convention

STUDENTS = Path(__file__).parent / "students"
CS231N = [STUDENTS / "cs231n" / f for f in ("layers.py", "rnn_layers.py", "optim.py", "fc_net.py", "cnn.py")]
UVA = [STUDENTS / "uva" / f for f in ("modules.py", "mlp_numpy.py")]
CS324 = [STUDENTS / "cs324" / f for f in ("modules.py", "mlp_numpy.py")]
TORCH = [STUDENTS / "torch" / "layers.py"]


def _rows(report) -> dict:
    return {r.kind: r for r in report.rows}


def _planted(source: Path, changes: dict, bug: str | None, dest: Path) -> Path:
    """``source``'s text written to ``dest``, with the bug ``changes[bug]`` (old, new) planted where one is named."""
    text = source.read_text()
    if bug:
        assert changes[bug][0] in text
        text = text.replace(*changes[bug])
    dest.write_text(text)
    return dest


@pytest.mark.parametrize("convention, files", [("cs231n", CS231N), ("uva", UVA), ("cs324", CS324)])
def test_a_correct_submission_passes_every_configuration(convention, files):
    report = grade(files, resolve_convention(convention, None), seed=3, configs=3)
    assert report.ok, [r.first_failure for r in report.rows if r.first_failure]
    assert set(_rows(report)) == set(resolve_convention(convention, None)["layers"])
    for row in report.rows:
        assert row.total >= 3 and row.passed == row.total and row.points == 1 and row.worst_error < 1e-9


def test_twinnets_own_layers_pass_under_the_torch_convention():
    report = grade(TORCH, resolve_convention("torch", None), configs=2)
    assert report.ok and len(report.rows) == 6, [r.first_failure for r in report.rows]


def test_twinnets_own_pointwise_losses_pass_on_the_torch_convention(tmp_path):
    """MSELoss, L1Loss and BCELoss added to the torch convention by a spec (backward() takes nothing there)."""
    (tmp_path / "losses.toml").write_text('base = "torch"\n[layers.mse_loss]\nloss = "MSELoss"\n[layers.l1_loss]\n'
                                          'loss = "L1Loss"\n[layers.bce_loss]\nloss = "BCELoss"\n')
    report = grade(TORCH, resolve_convention(None, tmp_path / "losses.toml"), only=["mse_loss", "l1_loss", "bce_loss"],
                   configs=2)
    assert report.ok and len(report.rows) == 3, [r.first_failure for r in report.rows]
    assert all(r.passed == r.total >= 5 for r in report.rows)


DLFS = [STUDENTS / "dlfs" / "common" / f for f in ("layers.py", "functions.py", "util.py", "optimizer.py")]


@pytest.mark.parametrize("seed", [0, 1])
def test_deep_learning_from_scratch_layers_pass_under_the_dlfs_convention(seed):
    """The book's API: classes made with their parameters (Affine(W, b), Convolution(W, b, stride, pad),
    BatchNormalization(gamma, beta)), Pooling(pool_h, pool_w, ...) on windows of any shape, a test mode by
    train_flg=False, and SoftmaxWithLoss with the book's log(p + 1e-7): every configuration of every layer passes,
    imports of common.functions and common.util resolved among the files given."""
    report = grade(DLFS, resolve_convention("dlfs", None), seed=seed, configs=3)
    assert report.ok, [r.first_failure for r in report.rows if r.first_failure]
    assert set(_rows(report)) == set(resolve_convention("dlfs", None)["layers"])
    assert all(r.passed == r.total >= 3 and r.skipped == 0 for r in report.rows)


@pytest.mark.parametrize("kind, old, new, told", [
    ("linear", "self.dW = self.x.T @ dout", "self.dW = (self.x.T @ dout).T", "dw (dW) has shape"),
    ("linear", "return (dout @ self.W.T).reshape(self.shape)", "return dout @ self.W.T", "gives dx back in x's shape"),
    ("linear", "self.x = x.reshape(x.shape[0], -1)", "self.x = x", "layer flattens them itself (x.reshape(N, -1))"),
    ("conv", "self.db = dout.sum(axis=0)\n        self.dW", "self.db = dout.mean(axis=0)\n        self.dW", "db"),
    ("batchnorm", "        if train_flg:\n", "        if True:\n", "out (test mode)"),
    ("softmax_cross_entropy", ("(self.y - self.t) / n", "dx / n"), ("(self.y - self.t)", "dx"),  # both targets'
     "dx is the gradient of the losses' sum"),
    ("maxpool", "(h - self.pool_h) // self.stride + 1, (w - self.pool_w)", "(h - self.pool_h) // self.stride + 1, "
     "(w - self.pool_h)", "ph=1 pw=2"),  # wrong where the window is not square
])
def test_a_mistake_in_a_deep_learning_from_scratch_layer_fails_that_layer_alone(tmp_path, kind, old, new, told):
    common = tmp_path / "common"
    shutil.copytree(STUDENTS / "dlfs" / "common", common)
    text = (common / "layers.py").read_text()
    for before, after in zip(*((old, new) if isinstance(old, tuple) else ((old,), (new,)))):
        assert text.count(before) == 1
        text = text.replace(before, after)
    (common / "layers.py").write_text(text)
    rows = _rows(grade([common / f for f in ("layers.py", "functions.py", "util.py")],
                       resolve_convention("dlfs", None), configs=3))
    assert rows[kind].passed < rows[kind].total and told in " ".join(rows[kind].failures), rows[kind].failures
    assert all(r.passed == r.total for k, r in rows.items() if k != kind), {k: r.first_failure for k, r in rows.items()}


def test_a_readers_exact_loss_passes_beside_the_books_guarded_one_and_an_unstable_one_is_told_both_cures(tmp_path):
    """Under dlfs the reference of the loss is the book's -log(p + 1e-7) where the reader's loss is, and the exact
    cross-entropy where it is not: a log-sum-exp loss passes every configuration; log(softmax) with no epsilon is
    inf at logits of 1000, told to use either cure."""
    common = tmp_path / "common"
    shutil.copytree(STUDENTS / "dlfs" / "common", common)
    files = [common / f for f in ("layers.py", "functions.py", "util.py")]
    text = (common / "layers.py").read_text()
    (common / "layers.py").write_text(text.replace(
        "        return cross_entropy_error(self.y, t)",
        "        s = x - x.max(axis=1, keepdims=True)\n        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))\n"
        "        return -logp[np.arange(len(t)), t].mean()"))
    row = _rows(grade(files, resolve_convention("dlfs", None), only=["softmax_cross_entropy"], configs=3))
    assert row["softmax_cross_entropy"].passed == row["softmax_cross_entropy"].total, row["softmax_cross_entropy"]
    (common / "layers.py").write_text(text)
    functions = (common / "functions.py").read_text()
    (common / "functions.py").write_text(functions.replace(" + 1e-7))", "))"))
    with np.errstate(divide="ignore"):
        row = _rows(grade(files, resolve_convention("dlfs", None), only=["softmax_cross_entropy"], configs=3))
    told = row["softmax_cross_entropy"].first_failure
    assert "loss is inf" in told and "shifted - log(sum(exp(shifted)))" in told and "-log(p + 1e-7)" in told, told


def test_a_gradient_kept_under_a_name_of_another_case_and_a_class_of_another_name_are_told(tmp_path):
    """A reader's Affine keeps self.dw where the book's is self.dW (left None): told, not "dw is None". A class
    named ReLU or ReluLayer where the convention's is Relu: the table names it and how a spec takes it."""
    common = tmp_path / "common"
    shutil.copytree(STUDENTS / "dlfs" / "common", common)
    files = [common / f for f in ("layers.py", "functions.py", "util.py")]
    text = (common / "layers.py").read_text()
    (common / "layers.py").write_text(text.replace("self.dW = self.x.T @ dout", "self.dw = self.x.T @ dout")
                                      .replace("class Relu:", "class ReluLayer:"))
    rows = _rows(grade(files, resolve_convention("dlfs", None), only=["linear", "relu"], configs=2))
    assert "Affine.dW is None after backward, which set self.dw instead" in rows["linear"].first_failure
    assert "ReluLayer is defined, not Relu: a spec with base = \"dlfs\"" in rows["relu"].first_failure


def test_the_review_of_the_grader_hints_no_false_cause(tmp_path):
    """An Adam with its epsilon inside the square root uses the epsilon: not told it ignores it (a loose closeness
    had matched the default's run); a sigmoid class whose constructor needs an argument is not made without it (the
    bypass is an optimiser's alone); relu_forward missing beside leaky_relu_forward and affine_relu_forward gets no
    hint; a batch norm whose forward(x, train_flg) has no default is given train_flg=True."""
    optim = (STUDENTS / "cs231n" / "optim.py").read_text()
    eps = "np.sqrt(vt) + config['epsilon']"
    assert eps in optim
    (tmp_path / "optim.py").write_text(optim.replace(eps, "np.sqrt(vt + config['epsilon'])"))
    for seed in range(8):
        row = grade([tmp_path / "optim.py"], resolve_convention("cs231n", None), only=["adam"], seed=seed,
                    configs=3).rows[0]
        assert not any("ignores" in f for f in row.failures), row.failures
        assert "epsilon is inside the square root" in row.first_failure, row.first_failure
    (tmp_path / "sig.py").write_text("import numpy as np\nclass Sigmoid:\n    def __init__(self, name):\n"
                                     "        self.scale = 1.0\n    def forward(self, x):\n"
                                     "        return 1 / (1 + np.exp(-x)), x\n    def backward(self, dout, cache):\n"
                                     "        return dout\n")
    (tmp_path / "sig.toml").write_text('style = "functional"\n[layers.sigmoid]\nforward = "Sigmoid.forward"\n'
                                       'backward = "Sigmoid.backward"\n')
    row = grade([tmp_path / "sig.py"], resolve_convention(None, tmp_path / "sig.toml"), configs=2).rows[0]
    assert "Sigmoid() (to call its forward) raised TypeError" in row.first_failure, row.first_failure
    (tmp_path / "layers.py").write_text("def leaky_relu_forward(x, a):\n    pass\ndef affine_relu_forward(x, w, b):\n"
                                        "    pass\n")
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["relu"], configs=2).rows[0]
    assert row.first_failure == "not found in the submission: relu_forward, relu_backward", row.first_failure
    common = tmp_path / "common"
    shutil.copytree(STUDENTS / "dlfs" / "common", common)
    text = (common / "layers.py").read_text()
    (common / "layers.py").write_text(text.replace("def forward(self, x, train_flg=True):",
                                                   "def forward(self, x, train_flg):")
                                      .replace("self.dW = self.x.T @ dout", "self.dw = self.x.T @ dout")
                                      .replace("        self.x = self.shape = self.dW = self.db = None\n",
                                               "        self.x = self.shape = self.db = None\n"))
    rows = _rows(grade([common / f for f in ("layers.py", "functions.py", "util.py")], resolve_convention("dlfs", None),
                       only=["batchnorm", "linear"], configs=2))
    assert rows["batchnorm"].passed == rows["batchnorm"].total, rows["batchnorm"].failures
    assert "has no attribute dW after backward" in rows["linear"].first_failure
    assert "it set self.dw, another name to Python" in rows["linear"].first_failure


@pytest.mark.parametrize("old, new, kind, told", [
    ("self.momentum * self.v[key]", "0.9 * self.v[key]", "sgd_momentum",
     "the update ignores the momentum it is made with"),
    ("np.sqrt(self.h[key]) + 1e-7", "np.sqrt(self.h[key] + 1e-7)", "rmsprop", "epsilon is inside the square root"),
    ("lr_t * self.m[key]", "self.lr * self.m[key]", "adam", "the first step has no bias correction"),
    ("np.sqrt(self.v[key]) + 1e-7", "np.sqrt(self.v[key] + 1e-7)", "adam",
     "epsilon is inside the square root, m / sqrt(v + epsilon)"),
    ("self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]\n            params[key] += self.v[key]",
     "self.v[key] = self.momentum * self.v[key] + (1 - self.momentum) * grads[key]\n"
     "            params[key] -= self.lr * self.v[key]", "sgd_momentum", "the velocity is dampened"),
])
def test_a_readers_optimiser_made_with_its_hyperparameters_is_graded_step_by_step(tmp_path, old, new, kind, told):
    """Deep Learning from Scratch's Momentum(lr, momentum), RMSprop(lr, decay_rate) and Adam(lr, beta1, beta2), whose
    update(params, grads) changes the arrays in place over five steps; the book's Adam adds its epsilon before the
    bias correction scales the step (eps_form = "scaled"), and a mistake fails its optimiser alone."""
    common = tmp_path / "common"
    shutil.copytree(STUDENTS / "dlfs" / "common", common)
    text = (common / "optimizer.py").read_text()
    assert text.count(old) == 1
    (common / "optimizer.py").write_text(text.replace(old, new))
    rows = _rows(grade([common / "optimizer.py"], resolve_convention("dlfs", None),
                       only=["sgd_momentum", "rmsprop", "adam"], configs=3))
    assert rows[kind].passed < rows[kind].total and told in rows[kind].first_failure, rows[kind].first_failure
    assert all(r.passed == r.total for k, r in rows.items() if k != kind)
    (tmp_path / "torch_eps.toml").write_text('base = "dlfs"\n[layers.adam]\neps_form = "corrected"\n')
    row = _rows(grade([STUDENTS / "dlfs" / "common" / "optimizer.py"], resolve_convention(None, tmp_path /
                                                                                           "torch_eps.toml"),
                      only=["adam"], configs=3))["adam"]
    assert row.passed < row.total  # the book's Adam is not torch's: its epsilon is scaled with the correction


@pytest.mark.parametrize("old, new, told", [
    ("            return x * self.mask\n", "            return x * self.mask / (1.0 - self.dropout_ratio)\n",
     "an inverted dropout, where this convention's keeps x as it is"),
    ("        return x * (1.0 - self.dropout_ratio)", "        return x", "test mode returned x unchanged"),
    ("np.random.rand(*x.shape) > self.dropout_ratio", "np.random.rand(*x.shape) < self.dropout_ratio",
     "p is taken as the keep probability"),
    ("            self.mask = np.random.rand", "            if self.mask is None or self.mask.shape != x.shape:\n"
     "                self.mask = np.random.rand", "dropped the same values as the first"),
    ("        return dout * self.mask", "        return dout * self.mask / (1.0 - self.dropout_ratio)",
     "divided by the keep probability 0.8, where the forward kept x as it is"),
])
def test_a_readers_dropout_not_inverted_as_the_books_is_graded_and_its_mistakes_named(tmp_path, old, new, told):
    """Deep Learning from Scratch's Dropout(dropout_ratio) keeps x as it is in training (a new mask at each forward,
    its backward letting dout through the last one) and multiplies by 1 - dropout_ratio in test mode,
    forward(x, train_flg=False): the stand-in passes; an inverted one, a test mode returning x, the ratio read as
    the keep probability, one mask for every forward and a backward scaled as an inverted one's are each named."""
    common = tmp_path / "common"
    shutil.copytree(STUDENTS / "dlfs" / "common", common)
    files = [common / f for f in ("layers.py", "functions.py", "util.py")]
    row = _rows(grade(files, resolve_convention("dlfs", None), only=["dropout"], configs=2))["dropout"]
    assert row.passed == row.total >= 5, row.failures
    text = (common / "layers.py").read_text()
    assert text.count(old) == 1
    (common / "layers.py").write_text(text.replace(old, new))
    row = _rows(grade(files, resolve_convention("dlfs", None), only=["dropout"], configs=2))["dropout"]
    assert row.passed == 0 and told in row.first_failure, row.first_failure


CMU_DROPOUT = """import numpy as np
class Dropout(object):
    def __init__(self, p=0.5):
        self.p = p
    def forward(self, x, train=True):
        if train:
            self.mask = np.random.binomial(1, 1 - self.p, size=x.shape)
            return x * self.mask / (1 - self.p)
        return x
    def backward(self, delta):
        return delta * self.mask / (1 - self.p)
"""


def test_an_inverted_dropout_class_passes_by_its_keyword_or_its_eval_and_its_unscaled_backward_is_named(tmp_path):
    """CMU 11-785's inverted Dropout(p), p the drop probability, forward(x, train=False) in test mode; twinnet's own
    numpy_nn.Dropout, whose eval() selects test mode, under a spec on base = "torch"; a backward that forgets the
    1 / keep is named, and a class with neither keyword nor eval() is told how a spec says the mode."""
    (tmp_path / "dropout.py").write_text(CMU_DROPOUT)
    (tmp_path / "cmu.toml").write_text('style = "module"\n[layers.dropout]\nclass = "Dropout"\np = "drop"\n'
                                       'train_keyword = "train"\n')
    row = grade([tmp_path / "dropout.py"], resolve_convention(None, tmp_path / "cmu.toml"), configs=2).rows[0]
    assert row.passed == row.total >= 5, row.failures
    (tmp_path / "unscaled.py").write_text(CMU_DROPOUT.replace("delta * self.mask / (1 - self.p)", "delta * self.mask"))
    row = grade([tmp_path / "unscaled.py"], resolve_convention(None, tmp_path / "cmu.toml"), configs=2).rows[0]
    assert row.passed == 0 and "not divided by the keep probability" in row.first_failure, row.first_failure
    (tmp_path / "nokeyword.toml").write_text('style = "module"\n[layers.dropout]\nclass = "Dropout"\np = "drop"\n')
    row = grade([tmp_path / "dropout.py"], resolve_convention(None, tmp_path / "nokeyword.toml"), configs=2).rows[0]
    assert row.passed == 0 and "no eval() method" in row.first_failure and "train_keyword" in row.first_failure
    (tmp_path / "mine.py").write_text("from twinnet.numpy_nn import Dropout\n")
    (tmp_path / "torch.toml").write_text('base = "torch"\n[layers.dropout]\nclass = "Dropout"\np = "drop"\n')
    rows = _rows(grade([tmp_path / "mine.py"], resolve_convention(None, tmp_path / "torch.toml"), only=["dropout"],
                       configs=2))
    assert rows["dropout"].passed == rows["dropout"].total >= 5, rows["dropout"].failures


def test_a_functional_dropout_not_inverted_is_graded_under_inverted_false(tmp_path):
    """CS231n's functional dropout with the book's scaling (x kept in training, x * p in test mode, and dout * p
    through the test mode's backward) passes under inverted = false and fails the default, named either way."""
    text = (STUDENTS / "cs231n" / "layers.py").read_text()
    plain = (text.replace("mask = (np.random.rand(*x.shape) < p) / p", "mask = (np.random.rand(*x.shape) < p)")
             .replace("    elif mode == 'test':\n        out = x\n", "    elif mode == 'test':\n        out = x * p\n")
             .replace("    elif mode == 'test':\n        dx = dout\n", "    elif mode == 'test':\n"
                      "        dx = dout * dropout_param['p']\n"))
    assert plain.count("out = x * p") == 1 and plain.count("dout * dropout_param['p']") == 1
    (tmp_path / "layers.py").write_text(plain)
    (tmp_path / "plain.toml").write_text('base = "cs231n"\n[layers.dropout]\ninverted = false\n')
    row = _rows(grade([tmp_path / "layers.py"], resolve_convention(None, tmp_path / "plain.toml"), only=["dropout"],
                      configs=2))["dropout"]
    assert row.passed == row.total >= 5, row.failures
    row = _rows(grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["dropout"],
                      configs=2))["dropout"]
    assert row.passed == 0 and "the dropout is not inverted" in row.first_failure, row.first_failure
    row = _rows(grade([STUDENTS / "cs231n" / "layers.py"], resolve_convention(None, tmp_path / "plain.toml"),
                      only=["dropout"], configs=2))["dropout"]
    assert row.passed == 0 and "an inverted dropout, where this convention's" in row.first_failure


CMU_RNN_CELL = STUDENTS / "recurrent_cells" / "rnn_cell.py"
CMU_CELL = """style = "module"
grads = "accumulate"
[layers.rnn_step]
class = "RNNCell"
params = {weight_ih = "W_ih", weight_hh = "W_hh", bias_ih = "b_ih", bias_hh = "b_hh"}
grads = {weight_ih = "dW_ih", weight_hh = "dW_hh", bias_ih = "db_ih", bias_hh = "db_hh"}
grad = "mean"
backward = "states"
"""
DLFS2_CELL = """style = "module"
[layers.rnn_step]
class = "RNN"
args = ["weight_ih", "weight_hh", "bias"]
weight = "in_out"
params = {weight_ih = "params.0", weight_hh = "params.1", bias = "params.2"}
grads = {weight_ih = "grads.0", weight_hh = "grads.1", bias = "grads.2"}
"""


DLFS2_LSTM = DLFS2_CELL.replace("rnn_step", "lstm_step").replace('class = "RNN"', 'class = "LSTM"') + \
    'gates = "fgio"\n'


@pytest.mark.parametrize("spec, old, new, told", [
    (CMU_CELL, None, None, None),
    (DLFS2_LSTM, None, None, None),
    (DLFS2_LSTM.replace("fgio", "ifgo"), None, None, "in the order fgio, where this convention's is ifgo"),
    (DLFS2_LSTM, "dc_prev = ds * f", "dc_prev = ds", "dc_prev: relative error"),
    (DLFS2_LSTM, "self.grads[1][...] = h_prev.T @ dA", "self.grads[1][...] = h_prev.T @ dA / len(x)",
     "dweight_hh (grads.1): relative error"),
    (DLFS2_CELL, None, None, None),
    (CMU_CELL, "self.dW_hh += dz.T @ h_prev_t / n", "self.dW_hh += dz.T @ h_prev_t", "dweight_hh (dW_hh): relative error"),
    (CMU_CELL, " + h_prev_t @ self.W_hh.T + self.b_hh)", " + h_prev_t @ self.W_hh.T)", "out: relative error"),
    (CMU_CELL, "self.dW_hh += dz.T @ h_prev_t / n", "self.dW_hh = dz.T @ h_prev_t / n",
     "the gradient of weight_hh (dW_hh) is overwritten over backward calls; this convention sums it until zero_grad"),
    (CMU_CELL, "self.db_ih += dz.sum(axis=0) / n\n        self.db_hh +=",
     "self.db_ih = dz.sum(axis=0) / n\n        self.db_hh =",  # a class that mixes = and +=: each named
     "the gradients of bias_ih (db_ih) and bias_hh (db_hh) are overwritten over backward calls; this convention "
     "sums them until zero_grad"),
    (CMU_CELL, "return dz @ self.W_ih, dz @ self.W_hh", "return dz @ self.W_ih, dz @ self.W_hh.T", "dh_prev"),
    (DLFS2_CELL, "return dt @ Wx.T, dt @ Wh.T", "return dt @ Wx.T", "RNN.backward returned"),
    (DLFS2_CELL, "self.grads[2][...] = dt.sum(axis=0)", "self.grads[2][...] = dt.mean(axis=0)", "dbias"),
])
def test_an_rnn_cell_class_is_graded_by_its_courses_names_layouts_and_backward(tmp_path, spec, old, new, told):
    """Module style rnn_step: CMU 11-785's RNNCell(input_size, hidden_size) (W_ih (H, D) and two biases as attributes,
    gradients averaged over the batch and added up over calls, backward(delta, h_t, h_prev_l, h_prev_t)) and Deep
    Learning from Scratch 2's RNN(Wx, Wh, b) (params and grads lists, entries reached as "params.0", backward(dh_next)
    from its cache) pass against torch's tanh cell, and the book's LSTM(Wx, Wh, b), gates f, g, i, o, against
    torch's cell in that order; a mistake in any fails the quantity it touches, a gate order is named."""
    (tmp_path / "spec.toml").write_text(spec)
    if spec is CMU_CELL:
        files = [tmp_path / "rnn_cell.py"]
        shutil.copy(CMU_RNN_CELL, files[0])
    else:
        shutil.copytree(STUDENTS / "dlfs2" / "common", tmp_path / "common")
        files = [tmp_path / "common" / f for f in ("time_layers.py", "functions.py", "np.py", "config.py")]
    text = files[0].read_text()
    if old is not None:
        assert text.count(old) == 1
        files[0].write_text(text.replace(old, new))
    row = grade(files, resolve_convention(None, tmp_path / "spec.toml"), configs=3).rows[0]
    if told is None:
        assert row.passed == row.total >= 6 and row.skipped == 0, row.failures
    else:
        assert row.passed < row.total and told in " ".join(row.failures), row.failures


CMU_GRU = """name = "cmu-gru-cell"
style = "module"
[layers.gru_step]
class = "GRUCell"
batched = false
params = {""" + ", ".join(f'{p}_{s}{g} = "{p[0].upper() if p == "weight" else "b"}{g}{"x" if s == "i" else "h"}"'
                          for p in ("weight", "bias") for s in "ih" for g in "rzn") + """}
grads = {""" + ", ".join(f'{p}_{s}{g} = "d{p[0].upper() if p == "weight" else "b"}{g}{"x" if s == "i" else "h"}"'
                         for p in ("weight", "bias") for s in "ih" for g in "rzn") + "}\n"
STACKED_GRU = """import numpy as np
class GRU:
    def __init__(self, input_size, hidden_size):
        h = hidden_size
        self.weight_ih, self.weight_hh = np.zeros((3 * h, input_size)), np.zeros((3 * h, h))
        self.bias_ih, self.bias_hh = np.zeros(3 * h), np.zeros(3 * h)
    def forward(self, x, h):
        H = h.shape[1]
        gi, gh = x @ self.weight_ih.T + self.bias_ih, h @ self.weight_hh.T + self.bias_hh
        sig = lambda a: 1 / (1 + np.exp(-a))
        r, z = sig(gi[:, :H] + gh[:, :H]), sig(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        self.cache = (x, h, r, z, n, gh[:, 2 * H:])
        return (1 - z) * n + z * h
    def backward(self, dout):
        x, h, r, z, n, hn = self.cache
        dn = dout * (1 - z) * (1 - n ** 2)
        dz = dout * (h - n) * z * (1 - z)
        dr = dn * hn * r * (1 - r)
        dgi, dgh = np.hstack([dr, dz, dn]), np.hstack([dr, dz, dn * r])
        self.dweight_ih, self.dweight_hh = dgi.T @ x, dgh.T @ h
        self.dbias_ih, self.dbias_hh = dgi.sum(axis=0), dgh.sum(axis=0)
        return dgi @ self.weight_ih, dgh @ self.weight_hh + dout * z
"""
STACKED_SPEC = """name = "stacked-gru"
style = "module"
[layers.gru_step]
class = "GRU"
params = {weight_ih = "weight_ih", weight_hh = "weight_hh", bias_ih = "bias_ih", bias_hh = "bias_hh"}
grads = {weight_ih = "dweight_ih", weight_hh = "dweight_hh", bias_ih = "dbias_ih", bias_hh = "dbias_hh"}
"""


@pytest.mark.parametrize("source, spec, old, new, told", [
    ("gru", CMU_GRU, None, None, None),
    ("gru", CMU_GRU, "self.r * self.hn)", "self.r * (self.Wnh @ h_prev_t) + self.bnh)", "out: relative error"),
    ("gru", CMU_GRU, "dr = dn * self.hn * self.r", "dr = dn * (self.Wnh @ self.hidden) * self.r", "dx: relative"),
    ("gru", CMU_GRU, "self.dWzh, self.dbzh = np.outer(dz, self.hidden), dz", "self.dWzh, self.dbzh = np.outer(dz, "
     "self.hidden), dz\n        self.dWzx = self.dWzx + np.outer(dz, self.x) - np.outer(dz, self.x) * 2",
     "dweight_iz (dWzx): relative error"),
    ("gru", CMU_GRU, "self.dWnx, self.dbnx = np.outer(dn, self.x), dn",
     "self.dWnx, self.dbnx = np.outer(dn, self.x), dn.reshape(1, -1)", "dbias_in (dbnx) has shape (1, "),
    ("gru", CMU_GRU + 'upstream = "row"\n', "    def backward(self, delta):\n",
     "    def backward(self, delta):\n        assert delta.shape == (1, self.h)\n        delta = delta[0]\n", None),
    ("gru", CMU_GRU, "    def backward(self, delta):\n",
     "    def backward(self, delta):\n        assert delta.shape == (1, self.h)\n        delta = delta[0]\n",
     'upstream = "row" in the spec gives it as a (1, H) row'),
    ("stacked", STACKED_SPEC, None, None, None),
    ("stacked", STACKED_SPEC + 'gates = "zrn"\n', None, None, "out: relative error"),
    ("stacked", STACKED_SPEC, "dgh.T @ h", "dgi.T @ h", "dweight_hh"),
])
def test_a_gru_cell_class_is_graded_per_gate_or_stacked(tmp_path, source, spec, old, new, told):
    """Module style gru_step against torch's GRU equations (the reset gate on the hidden term with its bias): CMU
    11-785's GRUCell, one sample's vectors (batched = false), a weight and a bias per gate and input (Wrx ... bnh);
    and a batched cell of stacked weights, its gates' blocks in torch's order r, z, n (another order by gates).
    Each passes; a mistake in either fails what it touches."""
    text = (STUDENTS / "recurrent_cells" / "gru_cell.py").read_text() if source == "gru" else STACKED_GRU
    if old is not None:
        assert text.count(old) == 1
        text = text.replace(old, new)
    (tmp_path / "cell.py").write_text(text)
    (tmp_path / "spec.toml").write_text(spec)
    row = grade([tmp_path / "cell.py"], resolve_convention(None, tmp_path / "spec.toml"), configs=3).rows[0]
    if told is None:
        assert row.passed == row.total >= 6 and row.skipped == 0, row.failures
    else:
        assert row.passed < row.total and told in " ".join(row.failures), row.failures


def test_a_layers_own_accumulate_grades_an_accumulating_and_an_overwriting_cell_in_one_spec(tmp_path):
    """CMU's HW3P1 in one spec: its RNNCell adds its gradients up over calls (accumulate = true on that layer) and
    its GRUCell overwrites them (the spec's default); both pass, each setting swapped names the other behaviour,
    and a value that is not a boolean is refused before anything runs."""
    rnn = CMU_CELL.replace('grads = "accumulate"\n', "").replace('class = "RNNCell"\n',
                                                               'class = "RNNCell"\naccumulate = true\n')
    spec = "name = \"cmu-hw3\"\n" + rnn + CMU_GRU.split("style = \"module\"\n", 1)[1]
    files = [CMU_RNN_CELL, STUDENTS / "recurrent_cells" / "gru_cell.py"]
    (tmp_path / "hw3.toml").write_text(spec)
    rows = _rows(grade(files, resolve_convention(None, tmp_path / "hw3.toml"), configs=2))
    assert rows["rnn_step"].passed == rows["rnn_step"].total > 0, rows["rnn_step"].failures
    assert rows["gru_step"].passed == rows["gru_step"].total > 0, rows["gru_step"].failures
    (tmp_path / "swapped.toml").write_text(spec.replace("accumulate = true", "accumulate = false").replace(
        'class = "GRUCell"\n', 'class = "GRUCell"\naccumulate = true\n'))
    rows = _rows(grade(files, resolve_convention(None, tmp_path / "swapped.toml"), configs=2))
    assert rows["rnn_step"].passed == 0 and "every parameter's gradient is summed over backward calls; this " \
        "convention overwrites it" in rows["rnn_step"].first_failure
    assert rows["gru_step"].passed == 0 and "is overwritten over backward calls; this convention sums it" in \
        rows["gru_step"].first_failure
    (tmp_path / "bad.toml").write_text(spec.replace("accumulate = true", 'accumulate = "yes"'))
    with pytest.raises(TwinnetError, match=r"\[layers.rnn_step\]: accumulate must be true or false"):
        resolve_convention(None, tmp_path / "bad.toml")


def test_a_module_given_is_imported_before_one_beside_the_file_that_was_not_given(tmp_path):
    """A student's gru_cell.py in A/ beside its own activation.py (not given, broken), and the course's
    activation.py given from B/: the one given is imported, as the files given import each other as if side by
    side."""
    source = (STUDENTS / "recurrent_cells" / "gru_cell.py").read_text()
    start, end = source.index("def sigmoid"), source.index("class GRUCell")
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    (tmp_path / "A" / "gru_cell.py").write_text("from activation import sigmoid\n" + source[:start] + source[end:])
    (tmp_path / "A" / "activation.py").write_text("raise ImportError('a repository file, not given')\n")
    (tmp_path / "B" / "activation.py").write_text("import numpy as np\n\n\n" + source[start:end])
    (tmp_path / "spec.toml").write_text(CMU_GRU)
    row = grade([tmp_path / "A" / "gru_cell.py", tmp_path / "B" / "activation.py"],
                resolve_convention(None, tmp_path / "spec.toml"), configs=2).rows[0]
    assert row.passed == row.total >= 5, row.failures


DLFS2 = [STUDENTS / "dlfs2" / "common" / f for f in ("layers.py", "time_layers.py", "functions.py", "np.py", "config.py")]


def test_real_readers_rnn_files_are_graded_as_their_code_deserves(tmp_path, capsys):
    """From a helper's grading of real readers' files: a file's own sys.path.append("..") (the folder above common/)
    does not make the book's common/ an installed package, so a missing common.sampler is left out with a warning
    and the layers are graded; an import of the course's own package not given is not told to pip install it;
    CMU's starter's dW += None is told as a placeholder; a cell reading its square W_hh the other way round is named;
    a class made with arrays shows their shapes, not their values."""
    common = tmp_path / "common"
    shutil.copytree(STUDENTS / "dlfs2" / "common", common)
    layers = common / "layers.py"
    layers.write_text('import sys\nsys.path.append("..")\nfrom common.sampler import UnigramSampler\n' +
                      layers.read_text())
    assert main(["check", *(str(common / p.name) for p in DLFS2), "--convention", "dlfs2", "--only", "linear"]) == 0
    captured = capsys.readouterr()
    assert "No module named 'common.sampler'" in captured.err and "| linear (affine) | 10/10 |" in captured.out
    cell = tmp_path / "mytorch" / "rnn_cell.py"
    cell.parent.mkdir()
    source = CMU_RNN_CELL.read_text()
    start, end = source.index("class Tanh:"), source.index("class RNNCell")
    cell.write_text("from mytorch.nn.activation import Tanh\n" + source[:start] + source[end:])
    (tmp_path / "cmu.toml").write_text(CMU_CELL)
    row = grade([cell], resolve_convention(None, tmp_path / "cmu.toml"), configs=1).rows[0]
    assert "mytorch.nn is the course's own (mytorch/ holds the files given), not a package to install" in \
        row.first_failure and "pip install" not in row.first_failure, row.first_failure
    far = tmp_path / "keras" / "course" / "hw3" / "students" / "cell.py"  # that name 3 levels up: not the course's
    far.parent.mkdir(parents=True)
    far.write_text("from keras.layers import Tanh\n" + source[:start] + source[end:])
    row = grade([far], resolve_convention(None, tmp_path / "cmu.toml"), configs=1).rows[0]
    assert "pip install keras" in row.first_failure and "keras is the course's own" not in row.first_failure
    cell.write_text(source.replace("return dz @ self.W_ih, dz @ self.W_hh", "self.dx = dz @ self.W_ih"))
    row = grade([cell], resolve_convention(None, tmp_path / "cmu.toml"), configs=1).rows[0]
    assert row.first_failure.endswith("RNNCell.backward returned None"), row.first_failure  # no dx = "dx" hint
    for old, new, told in [("self.dW_hh += dz.T @ h_prev_t / n", "self.dW_hh += None",
                            "a starter's placeholder, such as dW += None, left unfilled?"),
                           ("h_prev_t @ self.W_hh.T", "h_prev_t @ self.W_hh",
                            "forward reads weight_hh transposed (the convention stores it (out, in): h @ W.T)")]:
        cell.write_text(source.replace(old, new))
        row = grade([cell], resolve_convention(None, tmp_path / "cmu.toml"), configs=1).rows[0]
        assert told in row.first_failure, row.first_failure
    (tmp_path / "affine.py").write_text("class Affine:\n    def __init__(self, W, b):\n"
                                        "        raise ValueError('no')\n")
    row = grade([tmp_path / "affine.py"], resolve_convention("dlfs2", None), only=["linear"], configs=1).rows[0]
    assert "Affine(<array of shape (3, 3)>, <array of shape (3,)>) raised ValueError: no" in row.first_failure


@pytest.mark.parametrize("seed", [0, 1])
def test_deep_learning_from_scratch_2s_layers_pass_under_the_dlfs2_convention(seed):
    """The second book's API: params and grads as lists (Affine(W, b), RNN(Wx, Wh, b), LSTM(Wx, Wh, b) with its
    gates f, g, i, o), the book's Dropout and loss, and common.np's star import of NumPy resolved among the files
    given: every configuration of every layer passes."""
    report = grade(DLFS2, resolve_convention("dlfs2", None), seed=seed, configs=3)
    assert report.ok, [r.first_failure for r in report.rows if r.first_failure]
    assert set(_rows(report)) == set(resolve_convention("dlfs2", None)["layers"])
    assert all(r.passed == r.total >= 3 and r.skipped == 0 for r in report.rows)


@pytest.mark.parametrize("file, kind, old, new, told", [
    ("layers.py", "linear", "self.grads[0][...] = self.x.T @ dout", "self.grads[0][...] = self.x.T @ dout * 2", "dw"),
    ("layers.py", "linear", "self.grads[1][...] = dout.sum(axis=0)", "self.grads[1] = dout.sum(axis=0)",
     "Affine.grads.1 is another object after backward than before: write the gradient into the array the list "
     "holds, grads[1][...] = ..."),
    ("time_layers.py", "rnn_step", "self.grads[2][...] = dt.sum(axis=0)", "self.grads = [x.T @ dt, h_prev.T @ dt, "
     "dt.sum(axis=0)]", "RNN.grads.0 is another object after backward than before"),
    ("time_layers.py", "lstm_step", "f, g, i, o = A[:, :H], A[:, H:2 * H], A[:, 2 * H:3 * H], A[:, 3 * H:]",
     "i, f, g, o = A[:, :H], A[:, H:2 * H], A[:, 2 * H:3 * H], A[:, 3 * H:]", "in the order ifgo"),
])
def test_a_mistake_in_a_deep_learning_from_scratch_2_layer_fails_that_layer_alone(tmp_path, file, kind, old, new,
                                                                                   told):
    shutil.copytree(STUDENTS / "dlfs2" / "common", tmp_path / "common")
    path = tmp_path / "common" / file
    assert path.read_text().count(old) == 1
    path.write_text(path.read_text().replace(old, new))
    rows = _rows(grade([tmp_path / "common" / p.name for p in DLFS2], resolve_convention("dlfs2", None), configs=2))
    assert rows[kind].passed < rows[kind].total and told in " ".join(rows[kind].failures), rows[kind].failures
    assert all(r.passed == r.total for k, r in rows.items() if k != kind), {k: r.first_failure for k, r in rows.items()}


@pytest.mark.parametrize("table, message", [
    ('[layers.linear]\nclass = "Affine"\nargs = ["bias"]\n', "in_features (given weight)"),
    ('[layers.batchnorm]\nclass = "BN"\neval_keyword = "eval"\ntrain_keyword = "train_flg"\n', "give one"),
    ('[layers.batchnorm]\nclass = "BN"\ntrain_keyword = "train flg"\n', "train_keyword must be the name"),
    ('[layers.softmax_cross_entropy]\nloss = "L"\nlog_epsilon = 0.5\n', "log_epsilon must be the epsilon"),
    ('[layers.softmax_cross_entropy]\nloss = "L"\nlog_epsilon = true\n', "log_epsilon must be the epsilon"),
    ('[layers.linear]\nclass = "Affine"\nargs = ["weight", "bias"]\nweight = "any"\n', '(not "any") says which'),
    ('[layers.maxpool]\nclass = "Pooling"\nargs = ["kernel_height", "stride"]\n', "together, or neither"),
    ('[layers.dropout]\nclass = "Dropout"\ninverted = "no"\n', "inverted must be true or false"),
    ('[layers.linear]\nclass = "Affine"\nflatten = 1\n', "flatten must be true or false"),
    ('[layers.rnn_step]\nclass = "RNN"\nbackward = "cache"\n', "backward must be \"dout\""),
    ('[layers.rnn_step]\nclass = "RNN"\ndx = "dx"\n', "unknown key(s) dx"),
    ('[layers.lstm_step]\nclass = "LSTM"\nbackward = "states"\n', "backward = \"states\" is for an RNN cell's"),
    ('[layers.gru_step]\nclass = "GRU"\ngates = "ifgo"\n', "gates must be the order of a GRU's gates r, z and n"),
    ('[layers.gru_step]\nclass = "GRU"\nbatched = "no"\n', "batched must be true or false"),
    ('[layers.gru_step]\nclass = "GRU"\nupstream = "row"\n', "it needs batched = false"),
    ('[layers.gru_step]\nclass = "GRU"\nparams = {weight_ih = "a", weight_hh = "b", bias = "c"}\n'
     'grads = {weight_ih = "d", weight_hh = "e", bias = "f"}\n', "or a weight and a bias per gate"),
    ('[layers.rnn_step]\nclass = "RNN"\nweight = "any"\n', "weight must be \"in_out\""),
    ('[layers.rnn_step]\nclass = "RNN"\nparams = {weight_ih = "a", weight_hh = "b", bias = "c"}\n'
     'grads = {weight_ih = "d", weight_hh = "e", bias_ih = "f", bias_hh = "g"}\n', "name the same parameters"),
    ('[layers.rnn_step]\nclass = "RNN"\nparams = {weight = "W", bias = "b"}\ngrads = {weight = "dW", bias = "db"}\n',
     "weight_ih, weight_hh, bias or weight_ih"),
    ('[layers.linear]\nclass = "L"\nparams = {weight = "params.0x", bias = "b"}\n'
     'grads = {weight = "dW", bias = "db"}\n', "must be a table naming"),
    ('[layers.dropout]\nclass = "Dropout"\ntrain_keyword = 1\n', "train_keyword must be the name"),
    ('[layers.dropout]\nclass = "Dropout"\nargs = ["p"]\n', "unknown key(s) args"),
])
def test_settings_for_classes_made_with_their_parameters_that_describe_no_course_are_refused(tmp_path, table,
                                                                                               message):
    (tmp_path / "course.toml").write_text('style = "module"\n' + table)
    with pytest.raises(TwinnetError, match=re.escape(message)):
        resolve_convention(None, tmp_path / "course.toml")


# (convention, bug file, layer kind, what the table must say, configurations that must still pass)
BUGS = [
    ("cs231n", "cs231n_conv_stride.py", "conv", "s=2 p=0: dw: relative error", "some"),
    ("cs231n", "cs231n_conv_pad0.py", "conv", "p=0: wrong only where pad is 0", "some"),
    ("cs231n", "cs231n_affine_transposed.py", "linear", "forward reads the weight transposed", "none"),
    ("cs231n", "cs231n_inplace.py", "softmax_loss", "modified its input x in place", "none"),
    ("cs231n", "cs231n_affine_decay.py", "linear", "modified its input w in place", "none"),
    ("cs231n", "cs231n_bn_gamma_decay.py", "batchnorm", "modified its input gamma in place", "none"),
    ("cs231n", "cs231n_pool_none.py", "maxpool", "dx is None", "none"),
    ("cs231n", "cs231n_affine_nobias.py", "linear", "db: relative error", "none"),
    ("cs231n", "cs231n_bn_unbiased.py", "batchnorm", "updated with the unbiased batch variance", "none"),
    ("cs231n", "cs231n_softmax_overflow.py", "softmax_loss", "scale=1000.0: the loss or dx is not finite", "some"),
    ("cs231n", "cs231n_log_eps.py", "softmax_loss", "loss is the cross-entropy with its log guarded by 1e-9", "some"),
    ("cs231n", "cs231n_rnn_bptt.py", "rnn", "t=4 d=3 h=5: dx: relative error", "some"),
    ("cs231n", "cs231n_lstm_bugs.py", "lstm_step", "blocks of the 4H columns are in the order ifgo, where this "
                                                   "convention's is ifog", "none"),
    ("cs231n", "cs231n_lstm_bugs.py", "lstm", "blocks of the 4H columns are in the order ifgo", "none"),
    ("cs231n", "cs231n_lstm_c0.py", "lstm", "the cell state starts as h0", "none"),
    ("cs231n", "cs231n_backward_zeros.py", "relu", "dx: relative error 1.00e+00", "none"),
    ("cs231n", "cs231n_pool_overlap.py", "maxpool", "s=1: dx: where windows overlap", "some"),
    ("cs231n", "cs231n_adam_nobias.py", "adam", "the first step has no bias correction", "none"),
    ("cs231n", "cs231n_dropout_not_inverted.py", "dropout", "the kept values are x itself: the dropout is not inverted",
     "none"),
    ("cs231n", "cs231n_dropout_drop.py", "dropout", "p is taken as the drop probability, where this convention's p is "
                                                    "the keep probability (p = \"drop\" in a spec", "none"),
    ("cs231n", "cs231n_embedding_buffered.py", "word_embedding", "dW[x] += dout writes each index once", "some"),
    ("cs231n", "cs231n_layernorm_batch_axis.py", "layernorm", "out normalises each feature over the batch (axis 0)",
     "none"),
    ("uva", "uva_grads_accumulate.py", "linear", "every parameter's gradient is summed over backward calls; this "
                                                 "convention overwrites it", "none"),
    ("uva", "uva_linear_transposed.py", "linear", "forward reads the weight transposed", "none"),
    ("cs324", "cs324_ce_sum.py", "softmax_cross_entropy", "dx is the gradient of the losses' sum", "some"),
    ("torch", "torch_grads_overwrite.py", "linear", "every parameter's gradient is overwritten over backward calls",
     "none"),
]


@pytest.mark.parametrize("convention, bug, kind, named, still", BUGS, ids=[f"{b[1]}-{b[2]}" for b in BUGS])
def test_each_planted_bug_is_caught_and_named(convention, bug, kind, named, still):
    files = {"cs231n": CS231N, "uva": UVA, "cs324": CS324, "torch": TORCH}[convention] + [STUDENTS / "bugs" / bug]
    rows = _rows(grade(files, resolve_convention(convention, None), only=[kind], configs=4))
    row = rows[kind]
    assert row.passed < row.total and row.points < 1
    assert any(named in f for f in row.failures), row.failures
    # a bug of one case only (a stride, a padding, overlapping windows): the other cases still pass
    assert (row.passed > 0) == (still == "some"), (row.passed, row.total)


def test_an_lstm_in_another_gate_order_passes_with_that_order_and_its_lost_cell_gradient_is_caught(tmp_path):
    spec = tmp_path / "torch-order.toml"
    spec.write_text('style = "functional"\n'
                    '[layers.lstm_step]\nforward = "lstm_step_forward"\nbackward = "lstm_step_backward"\ngates = "ifgo"\n'
                    '[layers.lstm]\nforward = "lstm_forward"\nbackward = "lstm_backward"\ngates = "ifgo"\n')
    rows = _rows(grade([STUDENTS / "bugs" / "cs231n_lstm_bugs.py"], resolve_convention(None, spec), configs=4))
    assert rows["lstm_step"].passed == rows["lstm_step"].total  # right, in its own order
    lstm = rows["lstm"]  # its lstm_backward drops dc(t) flowing back from step t+1: wrong wherever T > 1
    assert 0 < lstm.passed < lstm.total and "dx: relative error" in lstm.first_failure and " t=1 " not in lstm.first_failure
    spec.write_text(spec.read_text().replace('gates = "ifgo"', 'gates = "ifgx"', 1))
    with pytest.raises(TwinnetError, match="gates must be one of ifgo"):
        resolve_convention(None, spec)


def test_a_bug_in_the_layer_inside_the_model_fails_the_whole_model_check(tmp_path):
    """The MLP is checked through its own layers (found by class name in the model), for several SGD steps."""
    for f in UVA:
        (tmp_path / f.name).write_text(f.read_text())
    bug = (STUDENTS / "bugs" / "uva_grads_accumulate.py").read_text()
    (tmp_path / "modules.py").write_text((tmp_path / "modules.py").read_text() + "\n" + bug)
    row = _rows(grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention("uva", None),
                      only=["mlp"], configs=3))["mlp"]
    assert row.passed == 0 and "at step 2" in row.first_failure  # right at the first step, wrong from the second


def test_the_cli_prints_the_table_and_exits_1_on_a_failure(tmp_path, capsys):
    out_json = tmp_path / "grade.json"
    code = main(["check", *map(str, CS231N), str(STUDENTS / "bugs" / "cs231n_pool_none.py"), "--convention", "cs231n",
                 "--only", "maxpool,relu", "--json", str(out_json), "--seed", "5", "--configs", "2"])
    out = capsys.readouterr().out
    assert code == 1
    assert "| max pooling | 0/6 | n/a | maxpool #0" in out and "dx is None" in out and "| ReLU | 4/4 |" in out
    assert out.rstrip().endswith("FAILED: 1/2 points")
    grades = json.loads(out_json.read_text())
    assert grades["ok"] is False and grades["seed"] == 5 and grades["points"] == 1
    assert [(r["kind"], r["passed"], r["worst_error"]) for r in grades["layers"]] == [("relu", 4, 0.0),
                                                                                     ("maxpool", 0, None)]
    assert main(["check", *map(str, CS231N), "--convention", "cs231n", "--only", "relu"]) == 0


def test_the_teachers_secret_seed_changes_the_configurations(monkeypatch, capsys):
    args = ["check", str(CS231N[0]), "--convention", "cs231n", "--only", "conv", "--configs", "3"]
    monkeypatch.setenv("TWINNET_CHECK_SEED", "8125")
    assert main(args) == 0
    secret = capsys.readouterr().out
    assert "seed 8125" in secret
    monkeypatch.delenv("TWINNET_CHECK_SEED")
    main(args)
    assert "seed 0" in capsys.readouterr().out
    rows = [grade([CS231N[0]], resolve_convention("cs231n", None), only=["conv"], seed=s, configs=3).rows[0]
            for s in (0, 8125)]
    assert rows[0].total == rows[1].total


def test_student_code_that_crashes_loops_or_imports_its_neighbours_is_reported_not_fatal(tmp_path, monkeypatch):
    from twinnet.grader import loader

    monkeypatch.setattr(loader, "CALL_LIMIT_S", 2.0)  # far above what the other calls take, even on a busy machine
    (tmp_path / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "layers.py").write_text(
        "import numpy as np\nfrom helpers import double\n\n"
        "def relu_forward(x):\n    while True:\n        pass\n\n"
        "def relu_backward(dout, cache):\n    return dout\n\n"
        "def affine_forward(x, w, b):\n    out = x.reshape(len(x), -1) @ w + b\n    return out, (x, w)\n\n"
        "def affine_backward(dout, cache):\n    x, w = cache\n    raise KeyError('db')\n")
    report = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["relu", "linear"], configs=1)
    rows = _rows(report)
    assert "relu_forward ran for more than 2 s" in rows["relu"].first_failure
    assert "affine_backward raised KeyError: 'db' (layers.py:" in rows["linear"].first_failure
    assert "helpers" not in sys.modules  # the student's neighbour was imported privately


def test_two_students_files_of_the_same_name_do_not_meet(tmp_path):
    for who, factor in (("a", 1), ("b", 3)):
        (tmp_path / who).mkdir()
        (tmp_path / who / "layers.py").write_text(
            f"import numpy as np\ndef relu_forward(x):\n    return np.maximum(x, 0) * {factor}, x\n"
            "def relu_backward(dout, cache):\n    return dout * (cache > 0)\n")
    a = grade([tmp_path / "a" / "layers.py"], resolve_convention("cs231n", None), only=["relu"], configs=1)
    b = grade([tmp_path / "b" / "layers.py"], resolve_convention("cs231n", None), only=["relu"], configs=1)
    assert a.ok and not b.ok


def test_a_spec_file_describes_another_course(tmp_path):
    """A course whose affine layer is named linear_fwd/linear_bwd and keeps W as (out, in)."""
    (tmp_path / "mine.py").write_text(
        "import numpy as np\n"
        "def linear_fwd(x, w, b):\n    return x.reshape(len(x), -1) @ w.T + b, (x, w)\n"
        "def linear_bwd(dout, cache):\n    x, w = cache\n"
        "    return (dout @ w).reshape(x.shape), dout.T @ x.reshape(len(x), -1), dout.sum(0)\n")
    spec = tmp_path / "course.toml"
    spec.write_text('name = "mycourse"\nstyle = "functional"\n[layers.linear]\nforward = "linear_fwd"\n'
                    'backward = "linear_bwd"\nweight = "out_in"\n')
    report = grade([tmp_path / "mine.py"], resolve_convention(None, spec), configs=2)
    assert report.ok and report.convention == "mycourse"
    # the same code under CS231n's layout (in, out) fails: the spec's layout is what made it pass
    spec.write_text(spec.read_text().replace('"out_in"', '"in_out"'))
    assert not grade([tmp_path / "mine.py"], resolve_convention(None, spec), configs=2).ok


@pytest.mark.parametrize("args, message", [
    (["missing.py", "--convention", "cs231n"], "missing.py: no such file"),
    (["/dev/null", "--convention", "cs231n"], "/dev/null is not a regular file"),
    (["{layers}", "--convention", "cs999"], "unknown convention 'cs999'"),
    (["{layers}"], "give one of --convention"),
    (["{layers}", "--convention", "cs231n", "--only", "gru"], "--only gru: not a layer of the cs231n convention"),
    (["{layers}", "--spec", "{bad_spec}"], "is not valid TOML"),
    (["{layers}", "--spec", "{kind_spec}"], "unknown layer kind 'transformer'"),
    (["{broken}", "--convention", "cs231n"], "broken.py cannot be loaded: SyntaxError: invalid syntax (broken.py:1)"),
    (["{layers}", "--convention", "cs231n", "--configs", "0"], "--configs must be in [1, 1000]"),
    (["{layers}", "--convention", "cs231n", "--configs", "100000000"], "--configs must be in [1, 1000]"),
    # a pipe (or /dev/zero) would be read without end, as a grade file to replace or as the spec
    (["{layers}", "--convention", "cs231n", "--json", "{pipe}"], "pipe.json is not a regular file (a device or a"),
    (["{layers}", "--spec", "/dev/zero"], "/dev/zero is a device, not a file; name the course's spec"),
    (["{layers}", "--spec", "{pipe}"], "pipe.json is empty: a spec gives its style"),  # a pipe no one writes
    (["{nowhere}", "--convention", "cs231n"], "nowhere/layers.py: no such file"),  # (its folder missing too)
    (["{layers}", "--spec", "{empty_spec}"], "empty.toml is empty: a spec gives its style"),
    (["{layers}", "--spec", "{folder}"], "specs is a folder; name the course's spec, a .toml file in it"),
])
def test_bad_input_is_one_line(args, message, tmp_path, capsys, monkeypatch):
    if "{pipe}" in args:  # (no pipes of this kind on Windows)
        os.mkfifo(tmp_path / "pipe.json")
    (tmp_path / "empty.toml").write_text("# nothing yet\n")
    (tmp_path / "bad.toml").write_text("style = [\n")
    (tmp_path / "kind.toml").write_text('style = "functional"\n[layers.transformer]\nforward = "f"\n')
    (tmp_path / "broken.py").write_text("def f(:\n")
    fill = {"layers": str(CS231N[0]), "bad_spec": str(tmp_path / "bad.toml"), "kind_spec": str(tmp_path / "kind.toml"),
            "broken": str(tmp_path / "broken.py"), "pipe": str(tmp_path / "pipe.json"),
            "empty_spec": str(tmp_path / "empty.toml"), "nowhere": str(tmp_path / "nowhere" / "layers.py"),
            "folder": str(tmp_path / "specs")}
    (tmp_path / "specs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["check", *(a.format(**fill) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


AFFINE = ("def affine_forward(x, w, b):\n    return x.reshape(len(x), -1) @ w + b, (x, w, b)\n"
          "def affine_backward(dout, cache):\n    x, w, b = cache\n"
          "    return (dout @ w.T).reshape(x.shape), x.reshape(len(x), -1).T @ dout, dout.sum(0)\n")
RELU = ("def relu_forward(x):\n    return np.maximum(x, 0), x\n"
        "def relu_backward(dout, cache):\n    return dout * (cache > 0)\n")


def test_the_grading_process_imports_the_twinnet_that_started_it(tmp_path):
    """A twinnet run from a copy with a relative PYTHONPATH (a checkout's PYTHONPATH=src) grades with that copy,
    though its grading process starts in the submission's folder, where the relative path leads nowhere."""
    import subprocess

    import twinnet

    shutil.copytree(Path(twinnet.__file__).parent, tmp_path / "copy" / "twinnet",
                    ignore=shutil.ignore_patterns("__pycache__"))
    student = tmp_path / "alice"
    student.mkdir()
    (student / "layers.py").write_text("import numpy as np\nimport twinnet\n"
                                       "open('which.txt', 'w').write(twinnet.__file__)\n" + RELU)
    env = {**os.environ, "PYTHONPATH": "copy"}
    done = subprocess.run([sys.executable, "-m", "twinnet", "check", "alice/layers.py", "--convention", "cs231n",
                           "--only", "relu"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert Path((student / "which.txt").read_text()).resolve() == \
        (tmp_path / "copy" / "twinnet" / "__init__.py").resolve()


def test_a_grading_process_that_cannot_start_is_not_blamed_on_the_submission(tmp_path, monkeypatch, capsys):
    """A Python that cannot import twinnet (another environment's) fails before any of the submission's code
    runs: said so, not that the submission ended the process."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'twinnet'\" >&2\nexit 1\n")
    fake.chmod(0o755)
    (tmp_path / "layers.py").write_text("import numpy as np\n" + RELU)
    monkeypatch.setattr(sys, "executable", str(fake))
    assert main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--only", "relu"]) == 2
    err = capsys.readouterr().err
    assert "the grading process could not start (exit status 1" in err and "ended the grading process" not in err
    assert "No module named 'twinnet'" in err  # what it printed, passed on


@pytest.mark.parametrize("mask, passes", [("x > 0", True), ("x >= 0", True), ("np.heaviside(x, 0.5)", True),
                                           ("np.maximum(x / np.abs(x), 0)", False)])
def test_relu_at_inputs_of_exactly_zero_takes_any_subgradient_but_not_nan(tmp_path, mask, passes):
    """A ReLU's own output feeds the next one exact zeros: its gradient there may be 0 (torch's), dout or between,
    but x / |x| gives nan there (a TUM I2DL student's), which inputs kept away from 0 never showed."""
    (tmp_path / "layers.py").write_text("import numpy as np\ndef relu_forward(x):\n    return np.maximum(x, 0), x\n"
                                        f"def relu_backward(dout, x):\n    return dout * ({mask})\n")
    with np.errstate(invalid="ignore"):
        row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["relu"], configs=2).rows[0]
    assert (row.passed == row.total) == passes, row.failures
    if not passes:
        assert row.passed == row.total - 1 and "where the input is exactly 0" in row.first_failure
        assert "dx is nan" in row.first_failure, row.first_failure


def test_a_module_loss_whose_log_underflows_to_inf_is_told_why(tmp_path):
    """TUM I2DL's CrossEntropyFromLogits (2024) takes the log of a stable softmax: inf at logits of 1000, its
    gradient right. Told why, as a nan there was, not only that the loss is not finite."""
    (tmp_path / "loss.py").write_text(
        "import numpy as np\nclass CrossEntropyFromLogits:\n    def forward(self, y_out, y_truth):\n"
        "        e = np.exp(y_out - y_out.max(axis=1, keepdims=True))\n"
        "        self.p = e / e.sum(axis=1, keepdims=True)\n"
        "        return -np.mean(np.log(self.p[np.arange(len(y_truth)), y_truth]))\n"
        "    def backward(self, y_out, y_truth):\n        g = self.p.copy()\n"
        "        g[np.arange(len(y_truth)), y_truth] -= 1\n        return g / len(y_truth)\n")
    (tmp_path / "i2dl.toml").write_text('style = "module"\n[layers.softmax_cross_entropy]\n'
                                        'loss = "CrossEntropyFromLogits"\ninput = "logits"\ntarget = "labels"\n'
                                        'reduction = "mean"\nbackward = "inputs"\n')
    with np.errstate(divide="ignore"):
        row = grade([tmp_path / "loss.py"], resolve_convention(None, tmp_path / "i2dl.toml"), configs=3).rows[0]
    assert row.passed == row.total - 1, row.failures
    assert "loss is inf where the reference is" in row.first_failure and "though dx is right" in row.first_failure
    assert "shifted - log(sum(exp(shifted)))" in row.first_failure


def test_two_files_of_one_name_are_told_apart_in_the_warning_and_the_table(tmp_path, capsys):
    """Two years' layers.py given together: the replacement warning and the table's first line name each by the
    folder that tells them apart, not "layers.py defines relu_forward again ... not layers.py's"."""
    for year in ("ex2", "ex3"):
        (tmp_path / year).mkdir()
        (tmp_path / year / "layers.py").write_text("import numpy as np\n" + RELU)
    assert main(["check", str(tmp_path / "ex2" / "layers.py"), str(tmp_path / "ex3" / "layers.py"), "--convention",
                 "cs231n", "--only", "relu"]) == 0
    out, err = capsys.readouterr()
    assert "ex3/layers.py defines relu_forward again" in err and "not ex2/layers.py's" in err, err
    assert out.startswith("twinnet check: ex2/layers.py, ex3/layers.py (cs231n convention"), out


ACTIVATION_CLASSES = """import numpy as np
class Sigmoid:
    def forward(self, x):
        out = 1 / (1 + np.exp(-x))
        return out, out
    def backward(self, dout, cache):
        return dout * cache * (1 - cache)
class Tanh:
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out, x
    def backward(self, dout, cache):
        return dout * (1 - self.out ** 2)
class Relu:
    def forward(self, x):
        self.x = x
        return np.maximum(x, 0), x
    def backward(self, dout, cache):
        return dout * (self.x > 0)
"""


def test_sigmoid_and_tanh_as_instance_methods_returning_a_cache_are_graded(tmp_path):
    """TUM I2DL's activations are classes whose forward(self, x) returns (out, cache) and backward(self, dout,
    cache) takes it back: named as Class.method in a functional table, each is called on one instance of its class
    (Tanh keeps its output on itself: the same instance's backward reads it). A tanh backward with 1 - x^2 fails."""
    (tmp_path / "layer.py").write_text(ACTIVATION_CLASSES)
    spec = "".join(f'[layers.{kind}]\nforward = "{cls}.forward"\nbackward = "{cls}.backward"\n'
                   for kind, cls in (("sigmoid", "Sigmoid"), ("tanh", "Tanh"), ("relu", "Relu")))
    (tmp_path / "i2dl.toml").write_text('style = "functional"\n' + spec)  # (Relu's input kept on itself too:
    # a second layer's forward is another instance's, as in a network)
    rows = _rows(grade([tmp_path / "layer.py"], resolve_convention(None, tmp_path / "i2dl.toml"), configs=3))
    assert all(rows[k].passed == rows[k].total > 0 for k in ("sigmoid", "tanh", "relu")), rows
    (tmp_path / "layer.py").write_text(ACTIVATION_CLASSES.replace("(1 - self.out ** 2)", "(1 - cache ** 2)"))
    row = _rows(grade([tmp_path / "layer.py"], resolve_convention(None, tmp_path / "i2dl.toml"), only=["tanh"],
                      configs=3))["tanh"]
    assert row.passed == 0 and row.first_failure.startswith("tanh #0 shape=(1, 3): dx: relative error")


LEAKY_CLASS = """import numpy as np
class LeakyRelu:
    def __init__(self, slope=0.01):
        self.slope = slope
    def forward(self, x):
        return np.where(x > 0, x, self.slope * x), x
    def backward(self, dout, cache):
        return dout * np.where(cache > 0, 1.0, self.slope)
"""


def test_a_leaky_relu_whose_class_holds_the_slope_is_made_with_each_configurations_slope(tmp_path):
    """TUM I2DL's LeakyRelu(slope).forward(x) -> (out, cache): with args = ["negative_slope"] the instance is made
    with the configuration's slope and forward given x alone (every slope graded; a slope fixed in the code fails
    the others); with args = [] only the default slope's configurations are graded; without args, told to set it."""
    (tmp_path / "layer.py").write_text(LEAKY_CLASS)
    table = '[layers.leaky_relu]\nforward = "LeakyRelu.forward"\nbackward = "LeakyRelu.backward"\n'
    specs = {name: tmp_path / f"{name}.toml" for name in ("slope", "fixed", "none")}
    for name, args in (("slope", 'args = ["negative_slope"]\n'), ("fixed", "args = []\n"), ("none", "")):
        specs[name].write_text('style = "functional"\n' + table + args)

    def row(spec: str, path: Path = tmp_path / "layer.py"):
        return grade([path], resolve_convention(None, specs[spec]), configs=4).rows[0]

    graded = row("slope")
    assert graded.passed == graded.total == 6 and graded.skipped == 0, graded.failures
    graded = row("fixed")  # the 0.01 configurations alone; the others n/a
    assert graded.passed == graded.total and 0 < graded.total < 6 and graded.skipped > 0, graded.failures
    graded = row("none")
    assert graded.passed == 0 and 'args = ["negative_slope"] in a spec' in graded.first_failure, graded.first_failure
    (tmp_path / "bug.py").write_text(LEAKY_CLASS.replace("self.slope * x", "0.01 * x"))
    graded = row("slope", tmp_path / "bug.py")
    assert 0 < graded.passed < graded.total and "out: relative error" in graded.first_failure


def test_args_beside_a_static_forward_is_told_not_ignored(tmp_path):
    """args gives the slope to a class's constructor: beside a forward that is a @staticmethod (given the slope),
    the table says to leave args out, rather than grading a slope never passed."""
    (tmp_path / "layer.py").write_text("import numpy as np\nclass Leaky:\n    @staticmethod\n"
                                       "    def forward(x, slope=0.01):\n        return np.where(x > 0, x, slope * x), x\n"
                                       "    @staticmethod\n    def backward(dout, cache):\n        return dout\n")
    (tmp_path / "spec.toml").write_text('style = "functional"\n[layers.leaky_relu]\nforward = "Leaky.forward"\n'
                                        'backward = "Leaky.backward"\nargs = ["negative_slope"]\n')
    row = grade([tmp_path / "layer.py"], resolve_convention(None, tmp_path / "spec.toml"), configs=2).rows[0]
    assert row.passed == 0 and "is not an instance's method" in row.first_failure, row.first_failure
    assert "leave args out" in row.first_failure


@pytest.mark.parametrize("table, message", [
    ('[layers.leaky_relu]\nforward = "leaky_forward"\nbackward = "leaky_backward"\nargs = ["negative_slope"]\n',
     "names no class's method"),
    ('[layers.relu]\nforward = "Relu.forward"\nbackward = "Relu.backward"\nargs = []\n', "unknown key(s) args"),
    ('[layers.elu]\nforward = "Elu.forward"\nbackward = "Elu.backward"\nargs = ["slope"]\n',
     "args must list the class's arguments"),
])
def test_functional_args_that_describe_no_class_are_refused(tmp_path, table, message):
    (tmp_path / "course.toml").write_text('style = "functional"\n' + table)
    with pytest.raises(TwinnetError, match=re.escape(message)):
        resolve_convention(None, tmp_path / "course.toml")


I2DL_OPTIM = """import numpy as np


class Adam(object):
    def __init__(self, model, loss_func, learning_rate=1e-4, **kwargs):
        self.model = model
        self.loss_func = loss_func
        self.lr = learning_rate
        self.optim_config = kwargs.pop('optim_config', {})
        self._reset()

    def _reset(self):
        self.optim_configs = {}
        for p in self.model.params:
            self.optim_configs[p] = {}

    def _update(self, w, dw, config, lr):
        if config is None:
            config = {}
        config.setdefault('beta1', 0.9)
        config.setdefault('beta2', 0.999)
        config.setdefault('epsilon', 1e-4)
        config.setdefault('m', np.zeros_like(w))
        config.setdefault('v', np.zeros_like(w))
        config.setdefault('t', 0)
        m, v, t = config['m'], config['v'], config['t'] + 1
        beta1, beta2, eps = config['beta1'], config['beta2'], config['epsilon']
        m = beta1 * m + (1 - beta1) * dw
        v = beta2 * v + (1 - beta2) * dw ** 2
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        next_w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
        config['m'], config['v'], config['t'] = m, v, t
        return next_w, config


class SGDMomentum(object):
    def __init__(self, model, loss_func, learning_rate=1e-4, **kwargs):
        self.model = model

    def _update(self, w, dw, config, lr):
        if config is None:
            config = {}
        config.setdefault('momentum', 0.9)
        v = config.get('velocity', np.zeros_like(w))
        mu = config['momentum']
        v = mu * v - lr * dw
        next_w = w + v
        config['velocity'] = v
        return next_w, config
"""


def test_an_update_method_of_an_optimiser_that_needs_a_model_is_graded_with_its_rate_as_an_argument(tmp_path):
    """TUM I2DL's optimisers are classes made with a model and a loss, Adam(model, loss_func), whose _update(w, dw,
    config, lr) takes the rate on its own: the instance is made without its constructor, and learning_rate =
    "argument" gives the rate there, not in config. A first step with no bias correction is named as ever; without
    the setting, the table says to set it."""
    (tmp_path / "optim.py").write_text(I2DL_OPTIM)
    for name, rate in (("i2dl", 'learning_rate = "argument"\n'), ("plain", "")):
        (tmp_path / f"{name}.toml").write_text('style = "functional"\n[layers.adam]\nfunction = "Adam._update"\n'
                                               + rate + '[layers.sgd_momentum]\nfunction = "SGDMomentum._update"\n'
                                               + rate)
    rows = _rows(grade([tmp_path / "optim.py"], resolve_convention(None, tmp_path / "i2dl.toml"), configs=3))
    assert all(r.passed == r.total >= 3 for r in rows.values()), [r.failures for r in rows.values()]
    rows = _rows(grade([tmp_path / "optim.py"], resolve_convention(None, tmp_path / "plain.toml"), configs=3))
    assert all(r.passed == 0 and 'learning_rate = "argument" in a spec' in r.first_failure for r in rows.values())
    (tmp_path / "optim.py").write_text(I2DL_OPTIM.replace("m / (1 - beta1 ** t)", "m").replace(
        "v / (1 - beta2 ** t)", "v"))
    row = _rows(grade([tmp_path / "optim.py"], resolve_convention(None, tmp_path / "i2dl.toml"), only=["adam"],
                      configs=3))["adam"]
    assert row.passed == 0 and "no bias correction" in row.first_failure, row.first_failure
    # a momentum written into the code: right at the default hyperparameters, told where the drawn ones differ
    (tmp_path / "optim.py").write_text(I2DL_OPTIM.replace("mu = config['momentum']", "mu = 0.9"))
    row = _rows(grade([tmp_path / "optim.py"], resolve_convention(None, tmp_path / "i2dl.toml"),
                      only=["sgd_momentum"], configs=3))["sgd_momentum"]
    assert row.passed == 1 and "the update ignores config['momentum']" in row.first_failure, row.first_failure
    # I2DL since 2024: _update(self, w, dw, config, lr=None) falls back on self.lr, which the bypassed constructor
    # never set: told to give the rate as the argument too
    (tmp_path / "optim.py").write_text(I2DL_OPTIM.replace("def _update(self, w, dw, config, lr):\n        if",
                                                          "def _update(self, w, dw, config, lr=None):\n"
                                                          "        lr = self.lr if lr is None else lr\n        if"))
    rows = _rows(grade([tmp_path / "optim.py"], resolve_convention(None, tmp_path / "plain.toml"), configs=3))
    assert all("AttributeError" in r.first_failure and 'learning_rate = "argument" in a spec' in r.first_failure
               for r in rows.values()), [r.first_failure for r in rows.values()]
    (tmp_path / "bad.toml").write_text('style = "functional"\n[layers.adam]\nfunction = "adam"\n'
                                       'learning_rate = "both"\n')
    with pytest.raises(TwinnetError, match="learning_rate must be one of config, argument"):
        resolve_convention(None, tmp_path / "bad.toml")


def test_functions_kept_in_a_class_without_staticmethod_are_called_as_they_are(tmp_path):
    """EECS 498's layers with their @staticmethod lines dropped: Python 3 calls Linear.forward(x, w, b) through
    the class as a plain function, and so does the grader (no instance is made: the first parameter is not self);
    the float32 ReLU's gradient at inputs of exactly 0 is told as float32, as everywhere else, not as a share."""
    for path in EECS498:
        (tmp_path / path.name).write_text(path.read_text().replace("    @staticmethod\n", ""))
    files = [tmp_path / p.name for p in EECS498]
    assert "@staticmethod" not in files[0].read_text()
    rows = _rows(grade(files, resolve_convention("eecs498", None), only=["linear", "relu", "dropout"], configs=2))
    assert all(r.passed == r.total > 0 for r in rows.values()), {k: r.failures for k, r in rows.items()}
    (tmp_path / "relu.py").write_text("import numpy as np\ndef relu_forward(x):\n    return np.maximum(x, 0), x\n"
                                      "def relu_backward(dout, x):\n    return (dout * (x >= 0)).astype(np.float32)\n")
    row = grade([tmp_path / "relu.py"], resolve_convention("cs231n", None), only=["relu"], configs=1).rows[0]
    assert row.passed == 0 and all("float32" in f for f in row.failures), row.failures


def test_sigmoid_and_tanh_modules_are_graded_with_a_backward_or_a_derivative(tmp_path):
    """Module style: CMU mytorch's Sigmoid and Tanh, whose backward() returns the derivative (derivative = true),
    and the torch-like form whose backward(dout) returns dx; a sigmoid derivative of s (1 + s) fails."""
    (tmp_path / "act.py").write_text(
        "import numpy as np\nclass Sigmoid:\n    def forward(self, Z):\n        self.A = 1 / (1 + np.exp(-Z))\n"
        "        return self.A\n    def backward(self):\n        return self.A - self.A * self.A\n"
        "class Tanh:\n    def forward(self, Z):\n        self.A = np.tanh(Z)\n        return self.A\n"
        "    def backward(self, dLdA):\n        return dLdA * (1 - self.A ** 2)\n")
    (tmp_path / "spec.toml").write_text('style = "module"\n[layers.sigmoid]\nclass = "Sigmoid"\nderivative = true\n'
                                        '[layers.tanh]\nclass = "Tanh"\n')
    rows = _rows(grade([tmp_path / "act.py"], resolve_convention(None, tmp_path / "spec.toml"), configs=3))
    assert rows["sigmoid"].passed == rows["sigmoid"].total > 0 and rows["tanh"].passed == rows["tanh"].total > 0
    (tmp_path / "act.py").write_text((tmp_path / "act.py").read_text().replace("self.A - self.A * self.A",
                                                                               "self.A + self.A * self.A"))
    row = _rows(grade([tmp_path / "act.py"], resolve_convention(None, tmp_path / "spec.toml"), only=["sigmoid"],
                      configs=3))["sigmoid"]
    assert row.passed == 0 and "dx: relative error" in row.first_failure


def test_a_notebook_saved_as_a_py_file_is_told_to_be_renamed(tmp_path, capsys):
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": "import numpy as np\n"
         + RELU}]}
    (tmp_path / "relu.py").write_text(json.dumps(notebook))
    assert main(["check", str(tmp_path / "relu.py"), "--convention", "cs231n", "--only", "relu"]) == 2
    assert "relu.py holds a Jupyter notebook's JSON, not Python: rename it relu.ipynb" in capsys.readouterr().err
    (tmp_path / "relu.py").rename(tmp_path / "relu.ipynb")  # as told: graded
    assert main(["check", str(tmp_path / "relu.ipynb"), "--convention", "cs231n", "--only", "relu"]) == 0


def test_a_submission_runs_in_its_own_folder_not_the_teachers(tmp_path, monkeypatch):
    """A file a submission writes as it loads lands in its own folder, not in the folder twinnet check was run from
    (where the teacher's grades are), and a numpy.py beside it does not replace NumPy in the grading process."""
    student, teacher = tmp_path / "alice", tmp_path / "teacher"
    student.mkdir()
    teacher.mkdir()
    (student / "numpy.py").write_text("raise SystemExit('the student numpy.py was imported')\n")
    (student / "layers.py").write_text("import numpy as np\nopen('written.txt', 'w').write('x')\n" + RELU)
    monkeypatch.chdir(teacher)
    assert main(["check", str(student / "layers.py"), "--convention", "cs231n", "--only", "relu"]) == 0
    assert (student / "written.txt").exists() and not (teacher / "written.txt").exists()


def test_a_course_package_with_relative_and_package_imports_loads_and_is_graded(tmp_path):
    """CS231n's own files import each other as a package: ``from .layers import *`` and ``from cs231n.layers
    import ...`` inside the cs231n/ folder."""
    package = tmp_path / "cs231n"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "layers.py").write_text("import numpy as np\n" + AFFINE)
    (package / "layer_utils.py").write_text("from .layers import *\nfrom cs231n.layers import affine_forward as af\n"
                                            "import numpy as np\n" + RELU)
    report = grade([package / "layers.py", package / "layer_utils.py"], resolve_convention("cs231n", None),
                   only=["linear", "relu"])
    assert [(r.kind, r.passed == r.total > 0) for r in report.rows] == [("linear", True), ("relu", True)]


@pytest.mark.parametrize("sub", ["classifiers", "hw-2"])
def test_a_file_in_a_package_of_a_package_imports_from_the_level_above(tmp_path, capsys, sub):
    """CS231n's cs231n/classifiers/fc_net.py imports ``from ..layers import *``: where each folder has its
    __init__.py, the file is loaded as the package's own (the level above found, the layers it imports graded
    from the student's cs231n/layers.py), whatever the subfolder's name; an import of a module not there is left
    out and named as the student spelt it, with one dot or two."""
    top = tmp_path / "cs231n"
    (top / sub).mkdir(parents=True)
    (top / "__init__.py").write_text("raise SystemExit('a package __init__ is not run')\n")
    (top / sub / "__init__.py").write_text("")
    (top / "layers.py").write_text("import numpy as np\n" + AFFINE + RELU)
    (top / sub / "fc_net.py").write_text("from ..layers import *\nfrom ..absent import thing\n"
                                        "from .absent_too import other\n\nclass FullyConnectedNet:\n    pass\n")
    report = grade([top / sub / "fc_net.py"], resolve_convention("cs231n", None), only=["linear", "relu"])
    assert [(r.kind, r.passed == r.total > 0) for r in report.rows] == [("linear", True), ("relu", True)]
    err = capsys.readouterr().err
    assert "fc_net.py:2: ModuleNotFoundError: No module named '..absent'; that import is left out" in err, err
    assert "fc_net.py:3: ModuleNotFoundError: No module named '.absent_too'; that import is left out" in err, err
    assert "twinnet_student" not in err


@pytest.mark.parametrize("dots, told", [
    ("..", "..layer_utils is neither installed nor among the files given: pass its file too"),
    ("....", "....layer_utils lies above the folders loaded as packages (the file's, the two above it and any further "
             "with an __init__.py): grade the file where it lies in the course's tree")])
def test_a_relative_import_of_a_module_not_there_is_left_out_and_told(tmp_path, capsys, dots, told):
    """A submission flattened into one folder (fc_net.py beside layers.py, no __init__.py): its ``from ..layer_utils
    import *`` finds no module in the folder above, and one with four dots reaches above the folders loaded as
    packages; either is left out with a warning, not a file that cannot be loaded, the layers of the other file are
    graded, and code that needs the import fails saying what to do."""
    folder = tmp_path / "a" / "b" / "flat"
    folder.mkdir(parents=True)
    (folder / "layers.py").write_text("import numpy as np\n" + AFFINE)
    (folder / "fc_net.py").write_text(f"import numpy as np\nfrom {dots}layer_utils import *\n\n"
                                      "def relu_forward(x):\n    return helper(x), x\n"
                                      "def relu_backward(dout, cache):\n    return dout * (cache > 0)\n")
    report = grade([folder / "layers.py", folder / "fc_net.py"], resolve_convention("cs231n", None),
                   only=["linear", "relu"])
    rows = _rows(report)
    assert rows["linear"].passed == rows["linear"].total > 0
    assert rows["relu"].passed == 0 < rows["relu"].total
    assert "NameError: name 'helper' is not defined" in rows["relu"].first_failure
    assert told in rows["relu"].first_failure, rows["relu"].first_failure
    err = capsys.readouterr().err
    assert "fc_net.py:2: " in err and "that import is left out" in err and "twinnet_student" not in err


def test_a_name_imported_from_a_file_that_left_its_import_out_is_left_out_too(tmp_path, capsys):
    """EECS 498's convolutional_networks.py imports ``Linear, ReLU, Solver`` from fully_connected_networks.py, which
    took Solver from the course's eecs598, not installed here: the other names are bound and the layers graded;
    Solver is left out here too, and code that needs it fails naming the first import left out."""
    (tmp_path / "helpers.py").write_text("import numpy as np\nfrom course_solver import Solver\n\n"
                                         "def relu_forward(x):\n    return np.maximum(x, 0), x\n")
    (tmp_path / "layers.py").write_text("from helpers import relu_forward, Solver\n\n"
                                        "def relu_backward(dout, cache):\n    return dout * (cache > 0)\n\n"
                                        "def sgd_momentum(w, dw, config=None):\n    return Solver(w), config\n")
    rows = _rows(grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["relu", "sgd_momentum"]))
    assert rows["relu"].passed == rows["relu"].total > 0, rows["relu"].failures
    assert rows["sgd_momentum"].passed == 0 < rows["sgd_momentum"].total
    assert "NameError: name 'Solver' is not defined" in rows["sgd_momentum"].first_failure
    assert "No module named 'course_solver'" in rows["sgd_momentum"].first_failure
    err = capsys.readouterr().err
    assert "layers.py:1: Solver from helpers.py, whose import of it was left out; it is left out here too" in err


@pytest.mark.parametrize("inits", [("cs231n",), (), ("cs231n/classifiers",)])
def test_a_package_of_a_package_without_its_init_files_imports_from_the_level_above(tmp_path, inits):
    """Python 3 imports folders without an __init__.py as namespace packages, so cs231n/classifiers/fc_net.py's
    ``from ..layers import *`` works for a student whose tree lacks either __init__.py (or both): graded so too."""
    top = tmp_path / "alice" / "cs231n"
    (top / "classifiers").mkdir(parents=True)
    for init in inits:
        (tmp_path / "alice" / init / "__init__.py").write_text("")
    shutil.copy(CS231N[0], top / "layers.py")
    (top / "classifiers" / "fc_net.py").write_text(CS231N[3].read_text().replace("from .layers import", "from ..layers import"))
    row = grade([top / "classifiers" / "fc_net.py"], resolve_convention("cs231n", None), only=["mlp"]).rows[0]
    assert row.passed == row.total > 0, row.failures


def test_a_students_file_linked_into_the_courses_tree_imports_from_that_tree(tmp_path):
    """A teacher links each student's fc_net.py into a copy of the course's tree (cs231n/classifiers/fc_net.py ->
    submissions/alice/fc_net.py): its ``from ..layers import *`` finds the tree's layers.py, as Python finds it."""
    top = tmp_path / "course" / "cs231n"
    (top / "classifiers").mkdir(parents=True)
    shutil.copy(CS231N[0], top / "layers.py")
    student = tmp_path / "submissions" / "alice"
    student.mkdir(parents=True)
    (student / "fc_net.py").write_text(CS231N[3].read_text().replace("from .layers import", "from ..layers import"))
    (top / "classifiers" / "fc_net.py").symlink_to(student / "fc_net.py")
    row = grade([top / "classifiers" / "fc_net.py"], resolve_convention("cs231n", None), only=["mlp"]).rows[0]
    assert row.passed == row.total == 4, row.failures


def test_relative_names_in_messages_are_spelt_as_the_student_wrote_them(tmp_path, capsys):
    """``from . import helpers`` and ``from .. import layer_utilz`` (modules not there) are named ``.helpers`` and
    ``..layer_utilz``, and a module reached by a relative import is named so in an error raised as the student's
    code runs: never with the grader's private package name."""
    top = tmp_path / "cs231n"
    (top / "classifiers").mkdir(parents=True)
    shutil.copy(CS231N[0], top / "layers.py")
    (top / "classifiers" / "fc_net.py").write_text(
        "from . import helpers\nfrom .. import layer_utilz\nfrom .. import layers\n\n"
        "def relu_forward(x):\n    return layers.relu_forwardd(x)\n"
        "def relu_backward(dout, cache):\n    return layer_utilz.relu_backward(dout, cache)\n")
    row = grade([top / "classifiers" / "fc_net.py"], resolve_convention("cs231n", None), only=["relu"]).rows[0]
    err = capsys.readouterr().err
    assert "cannot import name 'helpers' from '.'" in err and "cannot import name 'layer_utilz' from '..'" in err, err
    assert row.passed == 0 < row.total
    assert "raised AttributeError: module '..layers' has no attribute 'relu_forwardd'" in row.first_failure, \
        row.first_failure
    assert "twinnet_student" not in err + "".join(row.failures)


@pytest.mark.parametrize("levels, inits", [(("nndl",), False), (("mytorch", "nn"), True), (("mytorch", "nn"), False)])
def test_a_course_package_without_init_or_two_levels_deep_is_imported_from_the_files_given(tmp_path, levels, inits):
    """``from nndl.layers import _mask`` inside nndl/ with no __init__.py (a namespace package, as Python 3 imports
    it; UCLA's ECE C147), and ``from mytorch.nn.act import _mask`` inside mytorch/nn/ with an __init__.py at both
    levels (CMU 11-785) or at neither: the given file is found, the layer that needs it passes, and nothing of the
    folder stays in sys.modules after the load."""
    folder = tmp_path.joinpath(*levels)
    folder.mkdir(parents=True)
    if inits:
        for i in range(1, len(levels) + 1):
            tmp_path.joinpath(*levels[:i], "__init__.py").write_text("")
    (folder / "act.py").write_text("import numpy as np\n\ndef _mask(x):\n    return x > 0\n")
    dotted = ".".join(levels)
    (folder / "layers.py").write_text(f"import numpy as np\nfrom {dotted}.act import _mask\n\n"
                                      "def relu_forward(x):\n    return np.maximum(x, 0), x\n"
                                      "def relu_backward(dout, cache):\n    return dout * _mask(cache)\n")
    report = grade([folder / "act.py", folder / "layers.py"], resolve_convention("cs231n", None), only=["relu"])
    assert report.rows[0].passed == report.rows[0].total > 0, report.rows[0].failures
    assert levels[0] not in sys.modules and dotted + ".act" not in sys.modules
    if not inits:  # a name the folder's namespace lacks (a course file not given) is left out with a
        # warning, not a load failure, as the import of a module not given is
        (folder / "layers.py").write_text(f"from {levels[0]} import im2col\n" + (folder / "layers.py").read_text())
        report = grade([folder / "act.py", folder / "layers.py"], resolve_convention("cs231n", None), only=["relu"])
        assert report.rows[0].passed == report.rows[0].total > 0, report.rows[0].failures
    else:  # a module beside the package's top level, imported as a course's runner puts it on the path
        (tmp_path / levels[0] / "helpers.py").write_text("def _mask(x):\n    return x > 0\n")
        (folder / "layers.py").write_text((folder / "layers.py").read_text().replace(f"from {dotted}.act import",
                                                                                     "from helpers import"))
        report = grade([folder / "layers.py"], resolve_convention("cs231n", None), only=["relu"])
        assert report.rows[0].passed == report.rows[0].total > 0, report.rows[0].failures


@pytest.mark.parametrize("where", ["pkg/helpers.py", "helpers.py", "../helpers.py"])
def test_an_error_in_a_helper_the_file_imports_is_placed_in_the_helper(tmp_path, where):
    """A NameError at the top level of a helper module (below the file, beside it, or in the folder above, where
    a course's package keeps it) is placed at the helper's line, not at Python's import machinery
    (``<frozen importlib._bootstrap>``) or the importing line; an error the file raises itself stays its own."""
    from twinnet.grader import loader

    folder = tmp_path / "course" / "hw"
    helper = (folder / where).resolve()
    helper.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    if where.startswith(".."):  # the files' folder a package: the folder above it is importable, as a runner has it
        (folder / "__init__.py").write_text("")
    helper.write_text("import numpy as np\n\ndef relu_forward(x):\n    return np.maximum(x, 0), x\n"
                      "undefined_thing\n")
    module = where.removeprefix("../").removesuffix(".py").replace("/", ".")
    (folder / "layers.py").write_text(f"import numpy as np\nfrom {module} import relu_forward\n")
    with pytest.raises(TwinnetError) as caught:
        loader.load([folder / "layers.py"])
    assert str(caught.value) == (f"layers.py cannot be loaded: NameError: name 'undefined_thing' is not defined "
                                 f"({where}:5)")
    (folder / "layers.py").write_text("import numpy as np\nimport json\n\njson.loads('{')\n")
    with pytest.raises(TwinnetError) as caught:
        loader.load([folder / "layers.py"])
    assert str(caught.value).endswith("(layers.py:4)")  # json's own frames are not the student's


def test_an_error_in_code_on_the_graders_own_import_path_is_placed_at_the_students_line(tmp_path, monkeypatch):
    """A course's starter library on the teacher's PYTHONPATH, in a folder beside the class's (not the student's):
    an error it raises is placed at the student's call of it, not in the library."""
    from twinnet.grader import loader

    lib = tmp_path / "vendor" / "deep" / "lib"
    lib.mkdir(parents=True)
    (lib / "starterlib.py").write_text("def check(x):\n    if x < 0:\n        raise ValueError('negative')\n")
    folder = tmp_path / "subs" / "alice"
    folder.mkdir(parents=True)
    (folder / "layers.py").write_text("import starterlib\n\nstarterlib.check(-1)\n")
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.setattr(loader, "_PATH_BEFORE", [str(lib), *loader._PATH_BEFORE])
    with pytest.raises(TwinnetError) as caught:
        loader.load([folder / "layers.py"])
    assert str(caught.value) == "layers.py cannot be loaded: ValueError: negative (layers.py:3)"


def test_a_file_given_from_another_folder_is_imported_as_if_beside(tmp_path):
    """A repository that keeps mlp_numpy.py apart from the modules.py it imports (UvA 2018: code/ and
    submission/code/): both given, the import finds the given modules.py, and every layer is graded; nothing of
    the other folder stays in sys.modules after the load."""
    (tmp_path / "code").mkdir()
    (tmp_path / "submission").mkdir()
    shutil.copy(UVA[0], tmp_path / "code" / "modules.py")
    shutil.copy(UVA[1], tmp_path / "submission" / "mlp_numpy.py")
    report = grade([tmp_path / "code" / "modules.py", tmp_path / "submission" / "mlp_numpy.py"],
                   resolve_convention("uva", None), configs=4)
    assert all(r.passed == r.total > 0 for r in report.rows), [(r.kind, r.first_failure) for r in report.rows]
    assert "mlp" in {r.kind for r in report.rows}
    assert "modules" not in sys.modules


def test_every_file_that_cannot_be_loaded_is_told_at_once_and_python_2_is_named(tmp_path):
    """Two files of Python 2 (a print statement, an except clause with a comma): both told in one error, each as
    Python 2 code, with the file and line."""
    (tmp_path / "layers.py").write_text("import numpy as np\n\ndef relu_forward(x):\n    print 'x'\n")
    (tmp_path / "optim.py").write_text("try:\n    pass\nexcept ValueError, e:\n    pass\n")
    from twinnet import TwinnetError

    with pytest.raises(TwinnetError) as exc:
        grade([tmp_path / "layers.py", tmp_path / "optim.py"], resolve_convention("cs231n", None), only=["relu"])
    text = str(exc.value)
    assert "layers.py cannot be loaded: SyntaxError: Missing parentheses in call to 'print'" in text
    assert "optim.py cannot be loaded: SyntaxError: multiple exception types must be parenthesized" in text
    assert text.count("(Python 2 code, which Python 3 cannot run") == 2
    assert "(layers.py:4)" in text and "(optim.py:3)" in text


def test_a_loss_backward_that_takes_no_arguments_is_told_with_the_spec_setting(tmp_path):
    """CS324 students whose loss keeps its inputs and whose backward(self) takes none, where the convention passes
    them again: the TypeError is told with the spec's backward = "nothing" that grades such a loss."""
    modules = (STUDENTS / "cs324" / "modules.py").read_text()
    old = ("    def forward(self, x, y):\n        N = x.shape[0]\n        return -np.sum(y * np.log(x)) / N\n\n"
           "    def backward(self, x, y):\n        N = x.shape[0]\n")
    assert modules.count(old) == 1
    (tmp_path / "modules.py").write_text(modules.replace(old, (
        "    def forward(self, x, y):\n        self.x, self.y = x, y\n        N = x.shape[0]\n"
        "        return -np.sum(y * np.log(x)) / N\n\n    def backward(self):\n        x, y = self.x, self.y\n"
        "        N = x.shape[0]\n")))
    shutil.copy(STUDENTS / "cs324" / "mlp_numpy.py", tmp_path / "mlp_numpy.py")
    row = grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention("cs324", None),
                only=["softmax_cross_entropy"]).rows[0]
    assert row.passed == 0 and "CrossEntropy.backward raised TypeError" in row.first_failure, row.first_failure
    assert 'CrossEntropy.backward() takes no arguments' in row.first_failure
    assert 'backward = "nothing"' in row.first_failure


def test_only_a_module_not_there_is_left_out_and_each_file_runs_once(tmp_path, capsys):
    """A name missing from a file that is there (a typo) still stops the load, told as Python tells it; a file's
    top level runs once, though an import in it is left out; after an ``import *`` left out, a class on a base
    it would have given is left out too (with a warning), and the rest is graded."""
    from twinnet import TwinnetError
    from twinnet.grader.loader import load

    (tmp_path / "helpers.py").write_text("def helper():\n    return 1\n")
    (tmp_path / "typo.py").write_text("from helpers import helpr\n")
    with pytest.raises(TwinnetError) as exc:
        load([tmp_path / "typo.py"])
    assert "cannot import name 'helpr' from 'helpers'" in str(exc.value)
    assert "neither installed" not in str(exc.value) and "pip install" not in str(exc.value)
    counter = tmp_path / "runs.txt"
    (tmp_path / "layers.py").write_text(f"open({str(counter)!r}, 'a').write('x')\nimport numpy as np\n"
                                        "from course_base_classes import *\n\nclass Linear(Layer):\n    pass\n\n"
                                        + RELU)
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["relu"]).rows[0]
    assert row.passed == row.total > 0
    assert counter.read_text() == "x"  # the top level ran once
    err = capsys.readouterr().err
    assert "layers.py:5: NameError: name 'Layer' is not defined; that statement is left out" in err


def test_a_students_package_files_stay_their_own(tmp_path):
    """Two students' cs231n/ packages whose files import a module from the folder above (util.py): each gets
    its own util, not the first student's left in sys.modules."""
    from twinnet.grader.loader import load

    got = []
    for who in ("alice", "bob"):
        package = tmp_path / who / "cs231n"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (tmp_path / who / "util.py").write_text(f"WHO = {who!r}\n")
        (package / "layers.py").write_text("from util import WHO\n\ndef whose():\n    return WHO\n")
        got.append(load([package / "layers.py"]).get("whose")())
    assert got == ["alice", "bob"]


NEEDS_THE_COURSE = ("def affine_forward(x, w, b):\n    return course_helper(x, w, b), (x, w, b)\n\n"
                    "def affine_backward(dout, cache):\n    return course_helper(dout, cache)\n")


@pytest.mark.parametrize("line, named, install", [("from cs231n.im2col import *", "cs231n", True),
                                                  ("from .fast_layers import *", ".fast_layers", False)])
def test_an_import_of_a_course_file_not_given_is_left_out_and_named_where_it_is_needed(tmp_path, capsys, line,
                                                                                       named, install):
    """An import of a module neither installed nor given no longer stops the grading: it is left out with a
    warning, the layers that do not need it are graded, and one that does fails naming that import and what to
    do (install a package, or pass the course's file)."""
    (tmp_path / "layers.py").write_text(f"{line}\nimport numpy as np\n" + RELU + NEEDS_THE_COURSE)
    rows = _rows(grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["relu", "linear"]))
    assert rows["relu"].passed == rows["relu"].total > 0
    assert rows["linear"].passed == 0 < rows["linear"].total
    told = rows["linear"].first_failure
    assert "NameError: name 'course_helper' is not defined" in told and "import * left out" in told, told
    assert f"layers.py:1: ModuleNotFoundError: No module named '{named}'" in told
    assert f"{named} is neither installed nor among the files given" in told
    assert ("pip install cs231n" in told) == install
    err = capsys.readouterr().err
    assert f"layers.py:1: ModuleNotFoundError: No module named '{named}'; that import is left out" in err
    assert "twinnet_student" not in told + err  # the grader's private package name stays private


def test_a_helper_beside_that_imports_what_the_grader_lacks_is_loaded_without_it(tmp_path, capsys):
    """EECS 498's a3_helper.py imports torchvision and the course's eecs598 package for its plots, and the
    student's file imports its losses from it: the helper loads with those imports left out (told once, though
    both files load it), and the layers are graded; a statement that needs a left-out name is left out too."""
    (tmp_path / "helper.py").write_text("import numpy as np\nimport a_package_the_grader_lacks\n"
                                        "import course_package as cp\nPLOT = cp.defaults()\n\n"
                                        "def scale(x):\n    return x * 1.0\n")
    (tmp_path / "layers.py").write_text("from __future__ import annotations\nimport numpy as np\n"
                                        "from helper import scale\nfrom course_package import Solver\n"
                                        + RELU.replace("np.maximum(x, 0)", "scale(np.maximum(x, 0))"))
    files = [tmp_path / "layers.py", tmp_path / "helper.py"]
    row = grade(files, resolve_convention("cs231n", None), only=["relu"]).rows[0]
    assert row.passed == row.total > 0, row.failures
    err = capsys.readouterr().err
    assert err.count("helper.py:2: ModuleNotFoundError: No module named 'a_package_the_grader_lacks'") == 1, err
    assert "helper.py:4: NameError: name 'cp' is not defined; that statement is left out" in err
    assert "layers.py:4: ModuleNotFoundError: No module named 'course_package'; that import is left out" in err
    assert "helper" not in sys.modules and "layers" not in sys.modules


def test_a_submission_that_ends_its_process_as_it_loads_fails_with_one_line_never_passes(tmp_path, capsys):
    (tmp_path / "layers.py").write_text("import os\nos._exit(0)\nimport numpy as np\n" + RELU)
    grade = tmp_path / "grade.json"
    assert main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--only", "relu", "--json",
                 str(grade)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ended the grading process (exit status 0) before it could report" in err
    record = json.loads(grade.read_text())  # a gradebook still gets its line: no points, and why
    assert record["points"] == 0 and record["max_points"] == 1 and "ended the grading process" in record["error"]


def test_a_layer_that_ends_the_process_or_defeats_the_time_limit_fails_and_the_others_are_graded(tmp_path, capsys):
    """os._exit in one layer, a loop that swallows the time limit's exception (a bare except) in another,
    a loop that never ends in a third: each fails its own row (those graded after the process ended, by a new
    one), and the correct layer passes."""
    (tmp_path / "layers.py").write_text(
        "import numpy as np, time\n" + AFFINE + RELU.replace("    return np.maximum", "    import os; os._exit(0)\n"
                                                              "    return np.maximum")
        + "def max_pool_forward_naive(x, p):\n    while True:\n        try:\n            time.sleep(0.2)\n"
          "        except:\n            pass\n"
        "def max_pool_backward_naive(dout, cache):\n    return dout\n"
        "def conv_forward_naive(x, w, b, p):\n    while True:\n        pass\n"
        "def conv_backward_naive(dout, cache):\n    return dout\n")
    code = main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--only", "relu,conv,maxpool,linear",
                 "--configs", "2"])
    out = capsys.readouterr().out
    assert code == 1 and re.search(r"\| linear \(affine\) \| (\d+)/\1 \|", out), out
    assert re.search(r"\| ReLU \| 0/1 \| .*the submission ended the grading process \(exit status 0", out), out
    assert re.search(r"\| max pooling \| 0/1 \| .*max_pool_forward_naive ran past the 10 s time limit and caught its "
                     r"exception", out), out
    conv = re.search(r"\| convolution \| 0/(\d+) \| .*conv_forward_naive ran for more than 10 s", out)
    assert conv and int(conv.group(1)) > 1, out  # its other configurations failed without being run again


def test_what_a_layer_returns_that_never_finishes_being_read_fails_its_row_and_the_others_are_graded(
        tmp_path, capsys, monkeypatch):
    """The call returns at once, but reading what it returned runs the submission's code (``__array__``) that
    never ends, where no call's time limit reaches: the configuration's own limit ends the grading process,
    that layer fails saying so, and a new process grades the next layer."""
    from twinnet import grader

    monkeypatch.setattr(grader, "CONFIG_LIMIT_S", 5.0)  # the limit itself, lowered; the child is told it
    (tmp_path / "layers.py").write_text(
        "import numpy as np, time\n" + RELU + "class Endless:\n    def __array__(self, *a, **k):\n"
        "        while True:\n            time.sleep(0.05)\n"
        "def affine_forward(x, w, b):\n    return Endless(), (x, w, b)\n"
        "def affine_backward(dout, cache):\n    return None, None, None\n")
    code = main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--only", "linear,relu",
                 "--configs", "1"])
    out = capsys.readouterr().out
    assert code == 1 and re.search(r"\| ReLU \| (\d+)/\1 \|", out), out
    assert re.search(r"\| linear \(affine\) \| 0/1 \| .*linear #0 .*grading it took more than 5 s in all, though no "
                     r"call ran past its 10 s limit", out), out


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_class_graded_with_each_ends_with_its_grading_processes_however_it_is_stopped(tmp_path, how):
    """A student's call is running when `check --each` is stopped: SIGTERM ends it at once (not after the
    student's call or the class), and neither that nor SIGKILL leaves the grading process running on."""
    import os
    import signal
    import subprocess

    pid_file = tmp_path / "pid"
    student = tmp_path / "class" / "hangs"
    student.mkdir(parents=True)
    hang = f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n    while True:\n        time.sleep(0.05)\n"
    # two layers that each hang until the 10 s call limit: the signal has 20 s to arrive while one runs
    (student / "layers.py").write_text(
        "import os, time\nimport numpy as np\n" + "def relu_forward(x):\n" + hang
        + "def relu_backward(dout, cache):\n    return dout\n" + "def affine_forward(x, w, b):\n" + hang
        + "def affine_backward(dout, cache):\n    return None, None, None\n")
    proc = subprocess.Popen([sys.executable, "-m", "twinnet", "check", "layers.py", "--each", str(tmp_path / "class"),
                             "--convention", "cs231n", "--only", "linear,relu"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        child = int(pid_file.read_text())
        proc.send_signal(getattr(signal, how))
        assert proc.wait(timeout=60) == (143 if how == "SIGTERM" else -signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail(f"the grading process {child} outlived `twinnet check --each`")


def test_what_a_layer_returns_or_raises_fails_its_row_and_the_other_layers_are_still_graded(tmp_path, capsys):
    """An output whose arithmetic raises from one layer, KeyboardInterrupt and a BaseException raised in others: three
    failed rows, the correct ReLU still passes, and the table is printed (through the CLI's child process)."""
    (tmp_path / "layers.py").write_text(
        "import numpy as np\n" + RELU + "class Odd(np.ndarray):\n    def __array_ufunc__(self, *args, **kwargs):\n"
        "        raise ValueError('no arithmetic')\n"
        "def affine_forward(x, w, b):\n    return (x.reshape(x.shape[0], -1) @ w + b).view(Odd), None\n"
        "def affine_backward(dout, cache):\n    return None, None, None\n"
        "class Boom(BaseException):\n    pass\n"
        "def max_pool_forward_naive(x, p):\n    raise KeyboardInterrupt\n"
        "def max_pool_backward_naive(dout, cache):\n    return dout\n"
        "def conv_forward_naive(x, w, b, p):\n    raise Boom('no')\n"
        "def conv_backward_naive(dout, cache):\n    return dout\n")
    code = main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--only", "relu,linear,maxpool,conv",
                 "--configs", "1"])
    out = capsys.readouterr().out
    assert code == 1 and re.search(r"\| ReLU \| (\d+)/\1 \|", out)
    assert "what the submission returned cannot be graded (ValueError: no arithmetic)" in out
    assert "max_pool_forward_naive raised KeyboardInterrupt (layers.py:" in out
    assert "conv_forward_naive raised Boom: no (layers.py:" in out
    assert out.rstrip().endswith("FAILED: 1/4 points")


@pytest.mark.parametrize("style, kind", [("module", "rnn"), ("module", "layernorm"), ("functional", "gru_step")])
def test_a_spec_naming_a_layer_its_style_cannot_check_is_refused_in_one_line(style, kind, tmp_path, capsys):
    (tmp_path / "spec.toml").write_text(f'style = "{style}"\n[layers.{kind}]\nforward = "f"\nclass = "C"\n')
    (tmp_path / "layers.py").write_text("x = 1\n")
    assert main(["check", str(tmp_path / "layers.py"), "--spec", str(tmp_path / "spec.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"[layers.{kind}]" in err and f"cannot be checked in the {style} style" in err


def test_a_json_target_that_cannot_be_written_is_refused_before_grading(tmp_path, capsys):
    (tmp_path / "layers.py").write_text("import os\nos._exit(3)\n")  # grading it would fail another way
    assert main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--json", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder; name a file in it" in err and "ended the grading" not in err
    (tmp_path / "afile").write_text("")
    assert main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--json",
                 str(tmp_path / "afile" / "g.json")]) == 2
    assert f"{tmp_path / 'afile'} is a file, not a folder" in capsys.readouterr().err


def test_a_json_target_that_is_a_submission_or_the_spec_is_refused_and_left_as_it_was(tmp_path, capsys):
    layers, other = tmp_path / "a.py", tmp_path / "b.py"
    layers.write_text("def relu_forward(x):\n    return x\n")
    other.write_text("x = 1\n")
    # `--json a.py b.py`: the file name after --json forgotten, the first submission taken for it
    assert main(["check", "--convention", "cs231n", "--json", str(layers), str(other)]) == 2
    assert "exists and is not a grade file of twinnet check" in capsys.readouterr().err
    spec = tmp_path / "spec.toml"
    spec.write_text('style = "functional"\n[layers.relu]\nforward = "relu_forward"\nbackward = "relu_backward"\n')
    (tmp_path / "link.toml").symlink_to(spec)  # the same file by another name
    assert main(["check", str(layers), "--spec", str(spec), "--json", str(tmp_path / "link.toml")]) == 2
    assert "exists and is not a grade file of twinnet check" in capsys.readouterr().err
    assert layers.read_text().startswith("def relu_forward") and spec.read_text().startswith("style")
    grade = tmp_path / "grade.json"  # a grade file of an earlier check is replaced: nothing is lost
    assert main(["check", str(layers), "--spec", str(spec), "--json", str(grade)]) == 1
    first = json.loads(grade.read_text())
    layers.write_text("def relu_forward(x):\n    return x * (x > 0), x\n\ndef relu_backward(d, x):\n"
                      "    return d * (x > 0)\n")
    assert main(["check", str(layers), "--spec", str(spec), "--json", str(grade)]) == 0
    assert first["points"] == 0 and json.loads(grade.read_text())["points"] == 1


def test_the_public_harness_compares_exact_zeros_as_zeros():
    """A bias before batch norm gets no gradient: both engines give round-off around 0, which a purely
    relative error calls a total mismatch and the floor (atol / rtol) calls agreement."""
    import numpy as np
    import torch

    from twinnet import numpy_nn
    from twinnet.check import assert_close_rel, torch_twin_check

    torch.manual_seed(0)
    mine = numpy_nn.Sequential(numpy_nn.Linear(4, 3), numpy_nn.BatchNorm1d(3))
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    x = np.random.default_rng(0).standard_normal((5, 4))
    strict = torch_twin_check(mine, theirs, x, rng=np.random.default_rng(1))
    floored = torch_twin_check(mine, theirs, x, rng=np.random.default_rng(1), floor=1e-10 / 1e-7)
    assert floored["grad[0.bias]"] < 1e-9 and strict["grad[0.bias]"] > 1e-7
    assert_close_rel({k: v for k, v in floored.items() if k.startswith("grad")}, 1e-7)


def test_a_loss_of_probabilities_is_graded_on_huge_logits_too_not_only_its_softmax(tmp_path):
    """UvA's loss reads the log of the true class's probability: on logits of size 1000 the labels are each
    sample's most probable class, so the loss is called there too, and a loss that cannot run fails there as
    everywhere (it once earned that configuration on its softmax alone); the correct loss passes them all."""
    source = (STUDENTS / "uva" / "modules.py").read_text()
    (tmp_path / "modules.py").write_text(source.replace("out = -np.mean(", "out = None  # to do\n        out = -np.mean(")
                                         .replace("        out = -np.mean(", "        -np.mean("))
    wrong = grade([tmp_path / "modules.py"], resolve_convention("uva", None), only=["softmax_cross_entropy"])
    right = grade([STUDENTS / "uva" / "modules.py"], resolve_convention("uva", None), only=["softmax_cross_entropy"])
    assert wrong.rows[0].total > 3 and wrong.rows[0].passed == 0, wrong.rows[0].failures
    assert right.rows[0].passed == right.rows[0].total == wrong.rows[0].total


def test_a_loss_of_labels_that_masks_log_p_with_a_one_hot_is_told_why_it_is_nan_on_huge_logits(tmp_path):
    """UvA 2022: labels turned into a one-hot mask times log(p): on logits of size 1000 the other classes'
    probabilities are exactly 0 and 0 * log(0) is nan. It fails there (indexing p[arange(N), y] stays finite),
    with the value shown as nan and the cause and the fix named."""
    source = (STUDENTS / "uva" / "modules.py").read_text()
    masked = source.replace("out = -np.mean(np.log(x[np.arange(N), y]))",
                            "out = -np.sum(np.eye(x.shape[1])[y] * np.log(x)) / N")
    assert masked != source
    (tmp_path / "modules.py").write_text(masked)
    [row] = grade([tmp_path / "modules.py"], resolve_convention("uva", None), only=["softmax_cross_entropy"]).rows
    assert row.passed == row.total - 1, row.failures
    assert row.first_failure.startswith("softmax_cross_entropy #1 n=4 c=5 scale=1000.0: the loss is nan, not a finite")
    assert "0 * log(0) is nan" in row.first_failure and "p[np.arange(N), y]" in row.first_failure
    (tmp_path / "modules.py").write_text(source.replace("out = -np.mean(np.log(x[np.arange(N), y]))",
                                                        "out = np.inf"))  # a non-finite loss of another cause
    [row] = grade([tmp_path / "modules.py"], resolve_convention("uva", None), only=["softmax_cross_entropy"]).rows
    huge = next(f for f in row.failures if "scale=1000.0" in f)
    assert "the loss is inf, not a finite number" in huge and "np.float64" not in huge and "log(0)" not in huge


@pytest.mark.parametrize("seed", [7, 32])
def test_a_correct_one_hot_cross_entropy_passes_where_a_wrong_class_probability_underflows(seed):
    """cs324's loss, -sum(t * log p): at these seeds a wrong class's probability of logits of size 1000
    underflows to 0, and 0 * log 0 is nan whatever the student wrote; only the softmax is compared there."""
    report = grade(CS324, resolve_convention("cs324", None), only=["softmax_cross_entropy"], seed=seed)
    assert report.rows[0].total > 0 and report.rows[0].passed == report.rows[0].total, report.rows[0].failures


def test_a_layer_whose_params_dict_holds_its_own_arrays_computes_with_the_weights_the_grader_set(tmp_path):
    """``self.W = ...; self.params = {"weight": self.W}`` with forward reading ``self.W``: right under a
    training loop that updates ``params`` in place, so the grader writes the weights in place too."""
    source = (STUDENTS / "uva" / "modules.py").read_text()
    source = source.replace("        self.params = {\n            'weight': np.random.normal(0.0, std, size=(out_features, "
                            "in_features)),\n            'bias': np.zeros((1, out_features)),\n        }",
                            "        self.W = np.random.normal(0.0, std, size=(out_features, in_features))\n"
                            "        self.b = np.zeros((1, out_features))\n"
                            "        self.params = {'weight': self.W, 'bias': self.b}")
    source = source.replace("out = x @ self.params['weight'].T + self.params['bias']", "out = x @ self.W.T + self.b")
    assert "self.W.T" in source and "'weight': self.W" in source
    (tmp_path / "modules.py").write_text(source)
    (tmp_path / "mlp_numpy.py").write_text((STUDENTS / "uva" / "mlp_numpy.py").read_text())  # imports modules.py
    report = grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention("uva", None),
                   only=["linear", "mlp"])
    assert all(r.total and r.passed == r.total for r in report.rows), [r.first_failure for r in report.rows]


@pytest.mark.parametrize("layout", ["column", "row"])
def test_a_bias_kept_as_a_column_is_graded_under_a_convention_that_says_so(layout, tmp_path):
    """UvA's 2019-2021 modules keep the bias as (out, 1): right under ``bias = "column"``, and a layout
    mismatch (the same code under ``row``) fails on the bias's shape."""
    import copy

    source = (STUDENTS / "uva" / "modules.py").read_text()
    for old, new in (("'bias': np.zeros((1, out_features))", "'bias': np.zeros((out_features, 1))"),
                     ("x @ self.params['weight'].T + self.params['bias']", "x @ self.params['weight'].T + self.params['bias'].T"),
                     ("np.sum(dout, axis=0, keepdims=True)", "np.sum(dout, axis=0, keepdims=True).T")):
        assert old in source
        source = source.replace(old, new)
    (tmp_path / "modules.py").write_text(source)
    (tmp_path / "mlp_numpy.py").write_text((STUDENTS / "uva" / "mlp_numpy.py").read_text())  # imports modules.py
    convention = copy.deepcopy(resolve_convention("uva", None))
    convention["layers"]["linear"]["bias"] = layout
    report = grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], convention, only=["linear", "mlp"])
    if layout == "column":
        assert all(r.total and r.passed == r.total for r in report.rows), [r.first_failure for r in report.rows]
    else:
        assert report.rows[0].passed < report.rows[0].total  # only where M = 1, when (M, 1) and (1, M) agree
        assert "params['bias'] has shape (3, 1), the convention's is (1, 3)" in report.rows[0].first_failure


@pytest.mark.parametrize("text, message", [
    ('style = "module"\n[layers.linear]\nclass = "L"\nweights = "in_out"\n', "unknown key(s) weights"),
    ('style = "functional"\n[layers.softmax_loss]\nfunction = "f"\nreduction = "sum"\n', "unknown key(s) reduction"),
    ('style = "module"\nparam = "dict"\n[layers.relu]\nclass = "R"\n', "unknown setting(s) param"),
    ('style = "module"\n[layers.softmax_cross_entropy]\nloss = "L"\ninput = "probabilities"\n',
     'input = "probabilities" needs softmax'),
    ('style = 5\n', "style must be"),  # the setting that is wrong is named, not the missing tables
    ('style = "functional"\n[layers.dropout]\nforward = "f"\nbackward = "b"\noptional = "yes"\n',
     "[layers.dropout] optional must be true or false (a layer the files may lack), got 'yes'"),
    ('style = "functional"\n[layers.dropout]\nforward = "f"\nbackward = "b"\np = "half"\n',
     "[layers.dropout] p must be one of keep, drop"),
    ('style = "functional"\n[layers.relu]\nforward = "f"\nbackward = "b"\np = "keep"\n', "unknown key(s) p"),
    ('style = "module"\n', "needs a [layers.KIND] table"),
    ('style = "functional"\narrays = "jax"\n[layers.relu]\nforward = "f"\nbackward = "b"\n',
     "arrays must be \"numpy\" or \"torch\""),
    ('style = "module"\narrays = "torch"\n[layers.relu]\nclass = "R"\n', "arrays = \"torch\" is for functional"),
    ('style = "module"\n[layers.relu]\nclass = "R"\ndx = 3\n', "dx must name the attribute"),
    ('style = "module"\n[layers.relu]\nclass = "R"\ndx = "self dx"\n', "dx must name the attribute"),
    ('style = "module"\n[layers.relu]\nclass = "R"\nloss_item = 1\n', "unknown key(s) loss_item"),
    ('style = "module"\n[layers.softmax_cross_entropy]\nloss = "L"\nloss_item = true\n', "got True"),
    ('style = "module"\n[layers.softmax_cross_entropy]\nloss = "L"\nloss_item = -1\n', "counted from 0"),
    ('style = "functional"\n[layers.relu]\nforward = "f"\nbackward = "b"\ndx = "dx"\n', "unknown key(s) dx"),
    ('style = "module"\n[layers.mlp]\nclass = "M"\nlinear = "L"\ndx = "dx"\n', "unknown key(s) dx"),
    ('style = "module"\n[layers.mlp]\nclass = "M"\nlinear = "L"\ndx = 5\n', "unknown key(s) dx"),
    ('style = "module"\n[layers.relu]\nclass = "R"\ndx = "self.dx"\n', 'without self. (dx = "dx" for self.dx)'),
    ('style = "functional"\n[layers.conv]\nforward = "f"\nbackward = "b"\nimages = "hwc"\n',
     "images must be one of nchw, nhwc"),
    ('style = "module"\n[layers.conv]\nclass = "C"\nimages = "nhwc"\n', "unknown key(s) images"),
    ('style = "functional"\n[layers.relu]\nforward = "f"\nbackward = "b"\nimages = "nhwc"\n',
     "unknown key(s) images"),
])
def test_a_spec_with_a_key_the_grader_would_not_read_is_refused_before_grading(text, message, tmp_path):
    from twinnet import TwinnetError
    from twinnet.grader.conventions import load_spec

    (tmp_path / "spec.toml").write_text(text)
    with pytest.raises(TwinnetError, match=re.escape(message)):
        load_spec(tmp_path / "spec.toml")


def test_a_file_name_that_is_not_utf8_is_graded_and_the_json_is_written_before_the_table(tmp_path, capsys):
    import os

    name = tmp_path / os.fsdecode(b"caf\xe9_layers.py")  # a name from a zip made on another system
    name.write_text("import numpy as np\n" + RELU)
    grade_file = tmp_path / "grade.json"
    assert main(["check", str(name), "--convention", "cs231n", "--only", "relu", "--json", str(grade_file)]) == 0
    assert "caf" in capsys.readouterr().out and json.loads(grade_file.read_text())["ok"] is True


def test_an_update_that_ignores_its_config_passes_the_defaults_and_fails_the_drawn_hyperparameters(tmp_path):
    (tmp_path / "optim.py").write_text(
        "import numpy as np\n"
        "def rmsprop(w, dw, config=None):\n    config = {} if config is None else config\n"
        "    cache = 0.9 * config.get('cache', np.zeros_like(w)) + 0.1 * dw**2\n"  # the defaults, hard-coded
        "    config['cache'] = cache\n    return w - 0.01 * dw / (np.sqrt(cache) + 1e-8), config\n")
    row = grade([tmp_path / "optim.py"], resolve_convention("cs231n", None), only=["rmsprop"], configs=4).rows[0]
    assert row.passed == 1 and row.total == 4 and "drawn=True" in row.first_failure


@pytest.mark.parametrize("weight, bias, key, value, told", [
    ("self.grads['weight'] = dout.T @ self.x / len(self.x)",
     "self.grads['bias'] = np.mean(dout, axis=0, keepdims=True)", "grad", "mean", "dW of layer 1 at step 1"),
    ("self.grads['weight'] += dout.T @ self.x", "self.grads['bias'] += np.sum(dout, axis=0, keepdims=True)",
     "accumulate", True, "at step 2"),
])
def test_an_mlp_of_linear_layers_that_average_or_add_up_their_gradients_is_graded_under_its_setting(
        tmp_path, weight, bias, key, value, told):
    """grad = "mean" on the linear layer (CMU's 2022 mytorch): the MLP's backward is then given the summed loss's
    gradient, so that the averaged weight gradients are torch's; accumulate = true (a backward that adds to its
    gradients): the MLP's loop zeroes no gradient between steps, as the reference's does not. Either passes under
    its setting, and without it both the layer and the MLP fail (the summed MLP where n > 1, when a mean is not the
    sum; the accumulating one from its second step)."""
    import copy

    (tmp_path / "mlp_numpy.py").write_text(UVA[1].read_text())
    (tmp_path / "modules.py").write_text(UVA[0].read_text().replace(
        "self.grads['weight'] = dout.T @ self.x", weight).replace(
        "self.grads['bias'] = np.sum(dout, axis=0, keepdims=True)", bias))
    files = [tmp_path / "modules.py", tmp_path / "mlp_numpy.py"]
    setting = copy.deepcopy(resolve_convention("uva", None))
    setting["layers"]["linear"][key] = value
    rows = _rows(grade(files, setting, only=["linear", "mlp"], configs=3))
    assert all(r.total and r.passed == r.total for r in rows.values()), [r.first_failure for r in rows.values()]
    default = _rows(grade(files, resolve_convention("uva", None), only=["linear", "mlp"], configs=3))
    assert all(r.passed < r.total for r in default.values())
    assert told in default["mlp"].first_failure


def test_an_mlp_that_creates_its_output_layer_first_is_graded_in_the_order_its_forward_calls_the_layers(tmp_path):
    """Its layers found in attribute order would get the weights of other layers (or shapes refused)."""
    import shutil

    shutil.copy(STUDENTS / "uva" / "modules.py", tmp_path / "modules.py")
    (tmp_path / "mlp_numpy.py").write_text(
        "from modules import LinearModule, ReLUModule, SoftMaxModule\n"
        "class MLP(object):\n"
        "    def __init__(self, n_inputs, n_hidden, n_classes):\n"
        "        sizes = [n_inputs] + list(n_hidden)\n"
        "        self.output_layer = LinearModule(sizes[-1], n_classes)\n"
        "        self.softmax = SoftMaxModule()\n"
        "        self.hidden = [LinearModule(a, b) for a, b in zip(sizes[:-1], sizes[1:])][::-1]\n"  # last first
        "        self.relus = [ReLUModule() for _ in n_hidden]\n"
        "    def forward(self, x):\n"
        "        for lin, act in zip(self.hidden[::-1], self.relus):\n"
        "            x = act.forward(lin.forward(x))\n"
        "        return self.softmax.forward(self.output_layer.forward(x))\n"
        "    def backward(self, dout):\n"
        "        dout = self.output_layer.backward(self.softmax.backward(dout))\n"
        "        for lin, act in reversed(list(zip(self.hidden[::-1], self.relus))):\n"
        "            dout = lin.backward(act.backward(dout))\n"
        "        return dout\n")
    row = grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention("uva", None),
                only=["mlp"]).rows[0]
    assert row.total == 4 and row.passed == 4, row.failures  # the fourth: no hidden layer


def _every_row_fails(path, convention: str, kinds: list[str], reason: str) -> None:
    """Each of ``kinds`` graded (one drawn configuration) fails every configuration, first for ``reason``."""
    for row in grade([path], resolve_convention(convention, None), only=kinds, configs=1).rows:
        assert row.total and row.passed == 0 and reason in row.first_failure, (row.kind, row.first_failure)


def test_torch_style_layers_that_overwrite_their_gradients_fail_conv_and_batch_norm_too(tmp_path):
    """The torch convention sums gradients until zero_grad: a second backward must add to the first."""
    (tmp_path / "layers.py").write_text(
        "from twinnet.numpy_nn import BatchNorm1d as _BN, Conv2d as _Conv\n"
        "class _Overwrite:\n    def backward(self, dout):\n"
        "        for _, p in self.named_parameters():\n            p.grad = None\n"
        "        return super().backward(dout)\n"
        "class Conv2d(_Overwrite, _Conv):\n    pass\n"
        "class BatchNorm1d(_Overwrite, _BN):\n    pass\n")
    _every_row_fails(tmp_path / "layers.py", "torch", ["conv", "batchnorm"], "overwritten over backward calls")


def test_a_layer_that_keeps_its_cache_in_a_module_global_fails_as_two_such_layers_would(tmp_path):
    """Its backward reads what the last forward left, not the cache it is given: right for one layer
    alone, wrong in a network of two; a forward of another input between the two calls shows it."""
    (tmp_path / "layers.py").write_text(
        "import numpy as np\n_saved = {}\n"
        "def affine_forward(x, w, b):\n    _saved.update(x=x, w=w)\n    return x.reshape(len(x), -1) @ w + b, None\n"
        "def affine_backward(dout, cache):\n    x, w = _saved['x'], _saved['w']\n"
        "    return (dout @ w.T).reshape(x.shape), x.reshape(len(x), -1).T @ dout, dout.sum(0)\n"
        "def relu_forward(x):\n    _saved['r'] = x\n    return np.maximum(x, 0), None\n"
        "def relu_backward(dout, cache):\n    return dout * (_saved['r'] > 0)\n")
    _every_row_fails(tmp_path / "layers.py", "cs231n", ["linear", "relu"], "from the first cache after another forward")


def test_conv_and_batch_norm_that_keep_their_cache_in_a_module_global_fail_too(tmp_path):
    """A correct convolution and batch norm (the reference submission's), each handing backward what its
    last forward left in a module global instead of the cache it is given."""
    (tmp_path / "layers.py").write_text(
        "import importlib.util\n"
        f"_spec = importlib.util.spec_from_file_location('_good', {str(CS231N[0])!r})\n"
        "_good = importlib.util.module_from_spec(_spec)\n_spec.loader.exec_module(_good)\n_saved = {}\n"
        "def conv_forward_naive(x, w, b, p):\n    out, _saved['c'] = _good.conv_forward_naive(x, w, b, p)\n"
        "    return out, None\n"
        "def conv_backward_naive(dout, cache):\n    return _good.conv_backward_naive(dout, _saved['c'])\n"
        "def batchnorm_forward(x, g, b, p):\n    out, _saved['b'] = _good.batchnorm_forward(x, g, b, p)\n"
        "    return out, None\n"
        "def batchnorm_backward(dout, cache):\n    return _good.batchnorm_backward(dout, _saved['b'])\n")
    _every_row_fails(tmp_path / "layers.py", "cs231n", ["conv", "batchnorm"],
                     "from the first cache after another forward")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads a process's state from Linux's /proc")
def test_a_process_the_submission_forks_ends_with_the_grading(tmp_path, capsys):
    pid_file = tmp_path / "child.pid"
    (tmp_path / "layers.py").write_text(
        "import os, time\n"
        "if os.fork() == 0:  # a child left behind, meant to outlive the grader by minutes\n"
        f"    open({str(pid_file)!r} + '.tmp', 'w').write(str(os.getpid()))\n"
        f"    os.rename({str(pid_file)!r} + '.tmp', {str(pid_file)!r})\n"
        "    time.sleep(600)\n    os._exit(0)\n"
        f"while not os.path.exists({str(pid_file)!r}):  # the grading goes on once the child is surely there\n"
        "    time.sleep(0.01)\n\n"
        "def relu_forward(x):\n    return x * (x > 0), x\n\n"
        "def relu_backward(dout, cache):\n    return dout * (cache > 0)\n")
    assert main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--only", "relu"]) == 0
    status = Path(f"/proc/{int(pid_file.read_text())}/status")
    for _ in range(100):  # killed with the grading's process group: gone, or a zombie awaiting its reaper
        try:
            if "State:\tZ" in status.read_text():
                break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the submission's child still runs after the grading ended")


def test_what_a_submission_prints_is_shown_up_to_a_limit_and_the_rest_counted(tmp_path, capsys):
    from twinnet.grader.child import SHOWN_BYTES

    (tmp_path / "layers.py").write_text(
        "def relu_forward(x):\n    print('debug line ' * 100)\n    return x * (x > 0), x\n\n"
        "def relu_backward(dout, cache):\n    return dout * (cache > 0)\n")
    assert main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--only", "relu"]) == 0
    out, err = capsys.readouterr()
    printed = len("debug line " * 100) + 1  # one print per forward: at least 8 (one per configuration)
    assert err.startswith("debug line debug line") and "| ReLU | 8/8 |" in out and "debug" not in out  # stdout: grades
    assert abs(err.count("debug line") * len("debug line ") - SHOWN_BYTES) < 200  # the first SHOWN_BYTES, no more
    more = int(re.search(r"printed ([\d,]+) more bytes, not shown", err).group(1).replace(",", ""))
    assert (SHOWN_BYTES + more) % printed == 0 and SHOWN_BYTES + more >= 8 * printed  # every byte counted


def test_an_adam_whose_step_count_starts_at_two_is_told_so(tmp_path):
    """CS231n's 2017 starter set ``config['t']`` to 1 and students incremented it before use: the first
    step's bias correction then uses t = 2, which the grader names instead of a bare relative error."""
    source = (STUDENTS / "cs231n" / "optim.py").read_text()
    assert "config.setdefault('t', 0)" in source
    (tmp_path / "optim.py").write_text(source.replace("config.setdefault('t', 0)", "config.setdefault('t', 1)"))
    shifted = grade([tmp_path / "optim.py"], resolve_convention("cs231n", None), only=["adam"]).rows[0]
    right = grade([STUDENTS / "cs231n" / "optim.py"], resolve_convention("cs231n", None), only=["adam"]).rows[0]
    assert right.passed == right.total > 0
    assert shifted.passed == 0 and all("bias correction uses t = 2" in f for f in shifted.failures), shifted.failures

    assert "first_t = 2 in a spec" in shifted.first_failure
    # a spec on the built-in convention that counts as that starter does grades each the other way round
    spec = tmp_path / "cs231n-2017.toml"
    spec.write_text('base = "cs231n"\n[layers.adam]\nfirst_t = 2\n')
    convention = resolve_convention(None, spec)
    assert convention["name"] == "cs231n-2017" and convention["layers"]["adam"]["function"] == "adam"
    shifted = grade([tmp_path / "optim.py"], convention, only=["adam"]).rows[0]
    right = grade([STUDENTS / "cs231n" / "optim.py"], convention, only=["adam"]).rows[0]
    assert shifted.passed == shifted.total > 0, shifted.failures
    assert right.passed == 0 and "the first step's bias correction uses t = 1" in right.first_failure, right.failures


def test_a_spec_on_a_built_in_base_changes_only_what_it_gives(tmp_path):
    """``base = "cs231n"`` keeps every layer of CS231n's convention, each table laid over with the spec's keys."""
    spec = tmp_path / "c.toml"
    spec.write_text('base = "cs231n"\nname = "mine"\n[layers.dropout]\np = "drop"\n')
    convention = resolve_convention(None, spec)
    built_in = resolve_convention("cs231n", None)
    assert convention["name"] == "mine" and list(convention["layers"]) == list(built_in["layers"])
    assert convention["layers"]["dropout"] == {**built_in["layers"]["dropout"], "p": "drop"}
    assert all(convention["layers"][k] == v for k, v in built_in["layers"].items() if k != "dropout")
    drop = grade([STUDENTS / "bugs" / "cs231n_dropout_drop.py"], convention, only=["dropout"], configs=2).rows[0]
    assert drop.passed == drop.total > 0, drop.failures
    for text, told in [('base = "cs2310"\n', "base must name a built-in convention"),
                       ('base = "cs231n"\n[layers.adam]\nfirst_t = 3\n', "first_t must be 1"),
                       ('base = "cs231n"\n[layers.adam]\nfirst_t = true\n', "first_t must be 1"),
                       ('base = "cs231n"\nlayers = 3\n', "layers must be a table"),
                       ('base = ["cs231n"]\n', "base must name a built-in convention"),
                       ('base = "cs231n"\nstyle = "module"\n', "a spec on a base keeps its style"),
                       ('base = "cs231n"\n[layers.adam]\nlr = 3\n', "unknown key(s) lr")]:
        spec.write_text(text)
        with pytest.raises(TwinnetError, match=re.escape(told)):
            resolve_convention(None, spec)


def test_a_layer_the_course_gives_is_left_out_with_graded_false_unless_named(tmp_path):
    """CS231n's 2016-18 softmax_loss is the course's code in the student's layers.py (CS182 copies it), and it
    loses a tenth of a point at logits of 1000: ``graded = false`` leaves it out of the grade, row and CSV
    column alike; ``--only`` still grades it; a spec with nothing left to grade, or a graded that is not a
    boolean, is refused."""
    from twinnet.grader.each import grade_each

    naive = "loss = -np.sum(np.log(probs[np.arange(N), y])) / N"
    source = CS231N[0].read_text().replace("loss = -np.sum(log_probs[np.arange(N), y]) / N", naive)
    assert naive in source
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "layers.py").write_text(source)
    spec = tmp_path / "c.toml"
    spec.write_text('base = "cs231n"\n[layers.softmax_loss]\ngraded = false\n')
    convention = resolve_convention(None, spec)
    report = grade([tmp_path / "alice" / "layers.py"], convention, configs=1)
    kinds = [r.kind for r in report.rows]
    assert "softmax_loss" not in kinds and "linear" in kinds
    named = grade([tmp_path / "alice" / "layers.py"], convention, only=["softmax_loss"], configs=1).rows[0]
    assert named.kind == "softmax_loss" and 0 < named.passed < named.total
    plain = _rows(grade([tmp_path / "alice" / "layers.py"], resolve_convention("cs231n", None), configs=1))
    assert plain["softmax_loss"].passed < plain["softmax_loss"].total
    csv_path = tmp_path / "class.csv"
    grade_each(tmp_path, [Path("layers.py")], convention, only=None, seed=0, configs=1, csv_path=csv_path)
    assert "softmax_loss" not in csv_path.read_text().splitlines()[0] and "linear" in csv_path.read_text()
    for text, told in [('style = "functional"\n[layers.relu]\nforward = "a"\nbackward = "b"\ngraded = false\n',
                        "grades no layer"),
                       ('base = "cs231n"\n[layers.relu]\ngraded = "no"\n', "graded must be true or false")]:
        spec.write_text(text)
        with pytest.raises(TwinnetError, match=re.escape(told)):
            grade([tmp_path / "alice" / "layers.py"], resolve_convention(None, spec), configs=1)


def test_numpy_1_era_code_that_numpy_2_refuses_is_explained_and_the_table_names_numpy(tmp_path, capsys):
    """``int(a)`` of a one-element array worked in NumPy 1 and raises in NumPy 2: the failure says why, and
    the table's first line names the NumPy version the layers were graded under."""
    import numpy as np

    (tmp_path / "layers.py").write_text("import numpy as np\n" + RELU.replace(
        "    return np.maximum(x, 0), x\n", "    scale = int(np.array([1]))\n    return np.maximum(x, 0) * scale, x\n"))
    try:
        int(np.array([1]))
        pytest.skip("this NumPy still converts a one-element array to a number")
    except TypeError:
        pass
    assert main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--only", "relu"]) == 1
    out = capsys.readouterr().out
    assert f"seed 0, NumPy {np.__version__}, torch " in out.splitlines()[0]
    assert "if the array is of one element: NumPy" in out and "no longer turns that into a number" in out


def test_python_2_code_is_told_why_it_fails(tmp_path):
    """CS231n's 2016 files ran on Python 2: `/` of two integers gave an integer there and a float here, and
    xrange is gone. The failures name the cause; a float index for another reason gets no such hint."""
    source = CS231N[0].read_text()
    old = "    H_out = 1 + (H + 2 * pad - HH) // stride\n"
    assert source.count(old) == 1
    cases = {"divided": (source.replace(old, old.replace("//", "/")), "conv", "Python 2's / of two integers"),
             "xrange": (source.replace("for n in range(N):", "for n in xrange(N):", 1), "conv",
                        "xrange is Python 2's; Python 3 has range")}
    for name, (text, kind, hint) in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "layers.py").write_text(text)
        row = grade([tmp_path / name / "layers.py"], resolve_convention("cs231n", None), only=[kind],
                    configs=1).rows[0]
        assert row.passed == 0 and hint in row.first_failure, row.failures
    from twinnet.grader.loader import era_hint

    def raised(fn) -> BaseException:
        with pytest.raises(Exception) as info:
            fn()
        return info.value

    cache, shape, text = (np.ones(2), 3), (2, 3), "ab"
    floats = [lambda: np.zeros((2, 3 / 1)), lambda: [1, 2][np.float64(1)], lambda: np.arange(4)[np.ones(2)],
              lambda: range(np.float64(2.0)), lambda: np.take(np.arange(4), np.array([1.0]))]
    modern = [lambda: text["x"], lambda: cache["x"], lambda: range(shape), lambda: range(None),
              lambda: np.arange(4)["x"], lambda: np.add(np.zeros(2, dtype=np.int64), 0.5, out=np.zeros(2, np.int64))]
    assert all("a float where an integer belongs" in era_hint(raised(f)) for f in floats)
    assert [era_hint(raised(f)) for f in modern] == [""] * len(modern)  # no float: another mistake, no hint


ELU_MODULE = ("\n\nclass ELUModule(object):\n    def __init__(self, alpha):\n        self.alpha = alpha\n\n"
              "    def forward(self, x):\n        self.x = x\n        return np.where(x > 0, x, self.alpha * (np.exp(x) - 1))\n\n"
              "    def backward(self, dout):\n        return dout * np.where(self.x > 0, 1.0, self.alpha * np.exp(self.x))\n\n"
              "    def clear_cache(self):\n        self.x = None\n")


@pytest.mark.parametrize("bug", [None, "derivative", "mlp-relu"])
def test_uva_from_2022_elu_layers_and_an_elu_mlp_are_graded(bug, tmp_path):
    """UvA's course since 2022 has ELUModule(alpha) where ReLU was: the `uva-elu` convention grades the layer
    over several alphas and the MLP against torch's with ELU; a wrong derivative, or an MLP still on ReLU, fails."""
    modules = (STUDENTS / "uva" / "modules.py").read_text() + ELU_MODULE
    mlp = (STUDENTS / "uva" / "mlp_numpy.py").read_text().replace("ReLUModule()", "ELUModule(alpha=1.0)")
    mlp = mlp.replace("import LinearModule, ReLUModule,", "import LinearModule, ELUModule,")
    if bug == "derivative":
        modules = modules.replace("self.alpha * np.exp(self.x))", "np.exp(self.x))")  # right only at alpha 1
    if bug == "mlp-relu":
        mlp = (STUDENTS / "uva" / "mlp_numpy.py").read_text()
    (tmp_path / "modules.py").write_text(modules)
    (tmp_path / "mlp_numpy.py").write_text(mlp)
    report = grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention("uva-elu", None))
    rows = {r.kind: r for r in report.rows}
    assert list(rows) == ["linear", "elu", "softmax_cross_entropy", "mlp"]
    assert (rows["elu"].passed == rows["elu"].total) == (bug != "derivative")
    assert (rows["mlp"].passed == rows["mlp"].total) == (bug != "mlp-relu")
    assert rows["linear"].passed == rows["linear"].total > 0
    if bug == "derivative":
        assert 0 < rows["elu"].passed < rows["elu"].total and "dx: relative error" in rows["elu"].first_failure


@pytest.mark.parametrize("bug", [None, "derivative"])
def test_an_older_years_elu_module_with_alpha_fixed_at_one_is_graded_where_alpha_is_one(bug, tmp_path):
    """Before 2024 UvA's ELUModule() took no alpha (it is 1): the configurations at alpha 1 are graded, the
    others are not applicable, and a wrong derivative still fails."""
    elu = ELU_MODULE.replace("def __init__(self, alpha):\n        self.alpha = alpha",
                             "def __init__(self):\n        self.alpha = 1.0")
    assert elu != ELU_MODULE
    if bug == "derivative":
        elu = elu.replace("dout * np.where(self.x > 0, 1.0,", "dout * np.where(self.x > 0, 0.5,")
    (tmp_path / "modules.py").write_text((STUDENTS / "uva" / "modules.py").read_text() + elu)
    row = grade([tmp_path / "modules.py"], resolve_convention("uva-elu", None), only=["elu"]).rows[0]
    assert row.total > 0 and row.skipped > 0  # graded at alpha 1, the other alphas not applicable
    assert (row.passed == row.total) == (bug is None), row.failures
    if bug is None:
        assert not row.failures


LEAKY_MODULE = ("\n\nclass LeakyReLUModule(object):\n    def __init__(self, neg_slope):\n"
                "        self.neg_slope = neg_slope\n\n"
                "    def forward(self, x):\n        self.x = x\n        return np.where(x > 0, x, self.neg_slope * x)\n\n"
                "    def backward(self, dout):\n        return dout * np.where(self.x > 0, 1.0, self.neg_slope)\n\n"
                "    def clear_cache(self):\n        self.x = None\n")


ONE_HOT_LOSS = ("        out = -np.mean(np.log(x[np.arange(N), y]))\n",
                "        out = -np.sum(y * np.log(np.where(y > 0, x, 1.0))) / N\n",
                "        dx[np.arange(N), y] = -1.0 / (N * x[np.arange(N), y])\n",
                "        dx = -y / (N * np.where(y > 0, x, 1.0))\n")


def _uva_2019(tmp_path, modules: str, mlp: str) -> list[Path]:
    """UvA 2019's files: ``modules.py`` without ReLUModule, its loss on one-hot targets, and the given MLP."""
    source = (STUDENTS / "uva" / "modules.py").read_text()
    start = source.index("class ReLUModule")
    source = source[:start] + source[source.index("\nclass ", start):]
    for old, new in zip(ONE_HOT_LOSS[::2], ONE_HOT_LOSS[1::2]):
        assert old in source
        source = source.replace(old, new)
    (tmp_path / "modules.py").write_text(source + modules)
    (tmp_path / "mlp_numpy.py").write_text(mlp)
    return [tmp_path / "modules.py", tmp_path / "mlp_numpy.py"]


LEAKY_MLP = ((STUDENTS / "uva" / "mlp_numpy.py").read_text().replace("ReLUModule,", "LeakyReLUModule,")
             .replace("n_classes):", "n_classes, neg_slope):").replace("ReLUModule()", "LeakyReLUModule(neg_slope)"))


@pytest.mark.parametrize("bug", [None, "slope", "mlp-slope"])
def test_uva_2019_leaky_relu_layers_and_a_leaky_mlp_are_graded(bug, tmp_path):
    """UvA's 2019 course had LeakyReLUModule(neg_slope) and MLP(n_inputs, n_hidden, n_classes, neg_slope): the
    `uva-leaky` convention grades both over several slopes; a backward that ignores the slope, or an MLP that
    does not pass its slope on, fails."""
    assert "neg_slope):" in LEAKY_MLP and "LeakyReLUModule(neg_slope)" in LEAKY_MLP
    modules, mlp = LEAKY_MODULE, LEAKY_MLP
    if bug == "slope":
        modules = modules.replace("np.where(self.x > 0, 1.0, self.neg_slope)", "np.where(self.x > 0, 1.0, 0.01)")
    if bug == "mlp-slope":
        mlp = mlp.replace("LeakyReLUModule(neg_slope)", "LeakyReLUModule(0.01)")
    report = grade(_uva_2019(tmp_path, modules, mlp), resolve_convention("uva-leaky", None))
    rows = {r.kind: r for r in report.rows}
    assert list(rows) == ["linear", "leaky_relu", "softmax_cross_entropy", "mlp"]
    assert rows["linear"].passed == rows["linear"].total > 0
    loss = rows["softmax_cross_entropy"]  # that year's loss takes one-hot targets
    assert loss.passed == loss.total > 0, loss.failures
    assert (rows["leaky_relu"].passed == rows["leaky_relu"].total > 0) == (bug != "slope"), rows["leaky_relu"].failures
    assert (rows["mlp"].passed == rows["mlp"].total > 0) == (bug is None), rows["mlp"].failures
    if bug == "slope":  # right where the slope is 0.01 only
        assert 0 < rows["leaky_relu"].passed and "dx: relative error" in rows["leaky_relu"].first_failure


def test_uva_2019_files_graded_as_uva_are_told_which_convention_fits(tmp_path):
    """A 2019 submission under `uva` has no ReLUModule: the row says so and names the convention whose every
    layer the files define."""
    files = _uva_2019(tmp_path, LEAKY_MODULE, LEAKY_MLP)
    relu = grade(files, resolve_convention("uva", None), only=["relu"]).rows[0]
    assert relu.passed == 0 and "not found in the submission: ReLUModule" in relu.first_failure
    assert "try --convention uva-leaky" in relu.first_failure
    (tmp_path / "modules.py").write_text((STUDENTS / "uva" / "modules.py").read_text().replace(
        "class ReLUModule", "class ReLUModuleRenamed"))
    alone = grade(files[:1], resolve_convention("uva", None), only=["relu"]).rows[0]  # no convention fits
    assert "not found in the submission: ReLUModule" in alone.first_failure and "try" not in alone.first_failure


def test_a_leaky_relu_that_fixes_its_slope_is_graded_where_the_slope_holds_and_in_a_functional_spec(tmp_path):
    """``LeakyReLUModule()`` with torch's 0.01 built in: the configurations at 0.01 graded, the others not
    applicable; a functional course's ``leaky_relu_forward(x, slope)`` graded from a spec."""
    fixed = LEAKY_MODULE.replace("def __init__(self, neg_slope):\n        self.neg_slope = neg_slope",
                                 "def __init__(self):\n        self.neg_slope = 0.01")
    assert fixed != LEAKY_MODULE
    files = _uva_2019(tmp_path, fixed, LEAKY_MLP)
    row = grade(files[:1], resolve_convention("uva-leaky", None), only=["leaky_relu"]).rows[0]
    assert row.total > 0 and row.skipped > 0 and row.passed == row.total, row.failures
    (tmp_path / "layers.py").write_text(
        "import numpy as np\n\ndef leaky_relu_forward(x, slope):\n    return np.where(x > 0, x, slope * x), (x, slope)\n\n"
        "def leaky_relu_backward(dout, cache):\n    x, slope = cache\n    return dout * np.where(x > 0, 1, slope)\n")
    (tmp_path / "spec.toml").write_text('style = "functional"\n[layers.leaky_relu]\nforward = "leaky_relu_forward"\n'
                                        'backward = "leaky_relu_backward"\n')
    spec = resolve_convention(None, tmp_path / "spec.toml")
    functional = grade([tmp_path / "layers.py"], spec).rows[0]
    assert functional.total > 0 and functional.passed == functional.total, functional.failures


MYTORCH_2020_SPEC = '''name = "mytorch-2020"
style = "module"
[layers.linear]
class = "Linear"
args = ["in_features", "out_features", "weight_init", "bias_init"]
weight = "in_out"
bias = "row"
grad = "mean"
params = {weight = "W", bias = "b"}
grads = {weight = "dW", bias = "db"}
[layers.relu]
class = "ReLU"
derivative = true
[layers.softmax_cross_entropy]
loss = "SoftmaxCrossEntropy"
input = "logits"
target = "one_hot"
reduction = "none"
backward = "nothing"
[layers.batchnorm]
class = "BatchNorm"
params = {weight = "gamma", bias = "beta"}
grads = {weight = "dgamma", bias = "dbeta"}
eval_keyword = "eval"
layout = "row"
eps = 1e-8
'''


@pytest.mark.parametrize("bug", [None, "relu", "loss-mean", "bias-init", "running-unbiased"])
def test_cmu_2020_mytorch_is_graded_from_a_spec(bug, tmp_path):
    """CMU 11-785's 2019-21 handout: Linear takes the initialisers (the grader passes its own), activations and
    the loss give their gradient by derivative(), and the loss's forward gives each sample's loss. The stand-in
    passes; a wrong derivative, a loss averaged over the batch, a linear layer that ignores bias_init_fn, or a batch
    norm whose running variance is the unbiased one fails."""
    changes = {"relu": ("return (self.state > 0).astype(float)", "return (self.state >= 0).astype(float) * 0.5"),
               "loss-mean": ("return -(y * log_probs).sum(axis=1)", "return -(y * log_probs).sum(axis=1).mean()"),
               "bias-init": ("self.b = bias_init_fn(out_feature)", "self.b = np.zeros(out_feature)"),
               "running-unbiased": ("(1 - self.alpha) * self.var\n", "(1 - self.alpha) * x.var(axis=0, ddof=1)\n")}
    _planted(STUDENTS / "mytorch_2020" / "mytorch.py", changes, bug, tmp_path / "mytorch.py")
    (tmp_path / "spec.toml").write_text(MYTORCH_2020_SPEC)
    report = grade([tmp_path / "mytorch.py"], resolve_convention(None, tmp_path / "spec.toml"), configs=3)
    rows = {r.kind: r for r in report.rows}
    failing = {"relu": "relu", "loss-mean": "softmax_cross_entropy", "bias-init": "linear",
               "running-unbiased": "batchnorm"}.get(bug)
    for kind, row in rows.items():
        assert row.total > 0 and (row.passed == row.total) == (kind != failing), (kind, row.failures)
    if bug == "bias-init":  # the bias (out,) where the convention's row is (1, out): named
        assert "Linear.b has shape (3,), the convention's is (1, 3)" in rows["linear"].first_failure


def _notebook(path: Path, cells: list, nbformat: int = 4) -> Path:
    """A Jupyter notebook of code cells (strings) and markdown cells (("md", text)), as Jupyter saves it."""
    made = [{"cell_type": "markdown", "metadata": {}, "source": c[1]} if isinstance(c, tuple) else
            {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
             ("source" if nbformat == 4 else "input"): c.splitlines(keepends=True)} for c in cells]
    body = {"cells": made} if nbformat == 4 else {"worksheets": [{"cells": made}]}
    path.write_text(json.dumps({**body, "metadata": {}, "nbformat": nbformat, "nbformat_minor": 5}))
    return path


@pytest.mark.parametrize("nbformat", [4, 3])
def test_a_notebooks_definitions_are_graded_and_its_other_cells_not_run(tmp_path, nbformat, capsys):
    """A submission as a Jupyter notebook: its functions are graded; a cell that trains, loads data or exits,
    its magics and shell lines, and an import the grader lacks, are left out (the import with a warning)."""
    marker = tmp_path / "ran"
    notebook = _notebook(tmp_path / "assignment.ipynb", [
        ("md", "# Part 1"),
        "import numpy as np\nimport a_package_the_grader_lacks\n%matplotlib inline\n!pip install nothing\n",
        f"open({str(marker)!r}, 'w').write('x')\nraise SystemExit('a cell that must not run')\n",
        "SCALE = 1.0\nDTYPE = np.float64\nDATA = np.load('missing.npy')\nSHAPE = DATA.shape\n"
        "plt.rcParams['figure.figsize'] = (5.0, 4.0)\n\nclass Helper(a_package_the_grader_lacks.Base):\n    pass\n\n"
        "def relu_forward(x):\n    return np.maximum(x, 0).astype(DTYPE) * SCALE, x\n",
        "%%timeit\nrelu_forward(np.ones(3))\n",
        "def relu_backward(dout, cache):\n    return dout * (cache > 0)\n",
    ], nbformat)
    row = grade([notebook], resolve_convention("cs231n", None), only=["relu"]).rows[0]
    assert row.total > 0 and row.passed == row.total, row.failures
    assert not marker.exists()
    err = capsys.readouterr().err
    assert "code cell 1, line 2: ModuleNotFoundError" in err and "a_package_the_grader_lacks" in err
    # a name from a cell not run, and a class on a package not there: left out with a warning, not fatal
    assert "code cell 3, line 4: NameError: name 'DATA' is not defined; that statement is left out" in err
    assert "code cell 3, line 7: NameError" in err and "plt" not in err


def test_a_layer_a_notebook_imports_from_a_file_not_given_is_told_so(tmp_path):
    """deeplearning.ai's notebooks import relu and its backward from the course's dnn_utils: where that import
    was left out, the layer is not just "not found" but named with the import and what to pass."""
    notebook = _notebook(tmp_path / "nb.ipynb", ["import numpy as np\nfrom dnn_utils_v2 import relu_forward, "
                                                 "relu_backward\n"])
    row = grade([notebook], resolve_convention("cs231n", None), only=["relu"]).rows[0]
    assert row.first_failure.startswith("not found in the submission: relu_forward, relu_backward (relu_forward "
                                        "and relu_backward come from an import left out as the files were loaded, "
                                        "nb.ipynb, code "
                                        "cell 1, line 2: ModuleNotFoundError: No module named 'dnn_utils_v2'; "), \
        row.first_failure
    assert "pass its file too" in row.first_failure


def test_a_notebooks_failure_names_its_code_cell_and_line_and_a_broken_file_is_refused(tmp_path):
    notebook = _notebook(tmp_path / "nb.ipynb", [
        "import numpy as np\n",
        "def relu_forward(x):\n    return np.maximum(x, 0), x\n\ndef relu_backward(dout, cache):\n"
        "    return dout * (cache > 0) * undefined_scale\n",
    ])
    row = grade([notebook], resolve_convention("cs231n", None), only=["relu"]).rows[0]
    assert row.passed == 0 and "NameError" in row.first_failure
    assert "(nb.ipynb code cell 2, line 5)" in row.first_failure, row.first_failure
    (tmp_path / "bad.ipynb").write_text("{not json")
    with pytest.raises(TwinnetError, match="bad.ipynb is not a Jupyter notebook: it is not valid JSON"):
        grade([tmp_path / "bad.ipynb"], resolve_convention("cs231n", None), only=["relu"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(TwinnetError, match=r"not a \.py file or a Jupyter notebook"):
        grade([tmp_path / "notes.txt"], resolve_convention("cs231n", None), only=["relu"])
    # JSON, but no notebook: no cells at all, or a cell whose source is not text (told as such, by itself)
    for name, body, told in (("empty.ipynb", {}, "^empty.ipynb is not a Jupyter notebook: it has no list of cells; "
                                                 "pass the notebook file as Jupyter saved it"),
                             ("numbers.ipynb", {"cells": [{"cell_type": "code", "source": [1, 2]}]},
                              "^numbers.ipynb is not a Jupyter notebook as Jupyter saves it: code cell 1's source is "
                              "not text")):
        (tmp_path / name).write_text(json.dumps(body))
        with pytest.raises(TwinnetError, match=told):
            grade([tmp_path / name], resolve_convention("cs231n", None), only=["relu"])


def test_a_file_given_twice_is_graded_once_with_one_warning(tmp_path, capsys):
    (tmp_path / "layers.py").write_text("import numpy as np\n" + RELU)
    report = grade([tmp_path / "layers.py", tmp_path / ".." / tmp_path.name / "layers.py"],
                   resolve_convention("cs231n", None), only=["relu"])
    row = report.rows[0]
    assert row.passed == row.total > 0
    assert report.files == [str(tmp_path / "layers.py")]  # and named once in the report's header
    err = capsys.readouterr().err
    assert err.count("is given more than once; it is graded once") == 1 and "defines" not in err, err
    twice = [str(tmp_path / "layers.py")] * 2  # the command grades in a child process: its header names it once
    assert main(["check", *twice, "--convention", "cs231n", "--only", "relu"]) == 0
    assert "twinnet check: layers.py (cs231n convention" in capsys.readouterr().out
    (tmp_path / "loop.py").symlink_to(tmp_path / "loop.py")  # resolves to nothing: no such file, and the --json kept
    assert main(["check", str(tmp_path / "loop.py"), "--convention", "cs231n", "--json", str(tmp_path / "g.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert json.loads((tmp_path / "g.json").read_text())["files"] == [str(tmp_path / "loop.py")]


def _class(root: Path) -> Path:
    """A class of four: alice (right, her layers in a course package), bob (optim.py missing), carol (an
    affine layer that raises), dave (two layers.py at the same depth); a hidden folder and macOS's litter."""
    layers, optim = (STUDENTS / "cs231n" / "layers.py").read_text(), (STUDENTS / "cs231n" / "optim.py").read_text()
    files = {"alice/cs231n/layers.py": layers, "alice/optim.py": optim, "alice/old/deeper/layers.py": "x = (",
             "bob/layers.py": layers,
             "carol/layers.py": layers.replace("def affine_forward(x, w, b):", "def affine_forward(x, w, b):\n"
                                               "    raise ValueError('not done')"),
             "carol/optim.py": optim, "dave/a/layers.py": layers, "dave/b/layers.py": layers, "dave/optim.py": optim,
             ".git/layers.py": "", "__MACOSX/alice/layers.py": ""}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_whole_class_is_graded_one_folder_each_into_a_csv(tmp_path, capsys):
    import csv

    root = _class(tmp_path / "submissions")
    assert "raise ValueError('not done')" in (root / "carol" / "layers.py").read_text()
    out_csv = tmp_path / "grades.csv"
    code = main(["check", "layers.py", "optim.py", "--each", str(root), "--convention", "cs231n",
                 "--only", "linear,relu,adam", "--configs", "1", "--csv", str(out_csv)])
    assert code == 1  # not everyone passed
    rows = {r["student"]: r for r in csv.DictReader(out_csv.open())}
    assert list(rows) == ["alice", "bob", "carol", "dave"]  # .git and __MACOSX are not students
    assert rows["alice"]["all_passed"] == "True" and rows["alice"]["points"] == "3.0"
    # bob's layers.py graded without his optim.py: adam, which only optim.py would hold, is not found
    assert (rows["bob"]["linear"], rows["bob"]["relu"], rows["bob"]["adam"]) == ("1.0", "1.0", "0.0")
    assert rows["bob"]["points"] == "2.0"
    assert rows["bob"]["first_failure"].startswith("no optim.py in bob; Adam: not found")
    assert rows["carol"]["linear"] == "0.0" and rows["carol"]["relu"] == rows["carol"]["adam"] == "1.0"
    assert "linear (affine)" in rows["carol"]["first_failure"] and "not done" in rows["carol"]["first_failure"]
    assert rows["dave"]["points"] == "0.0" and "2 files match layers.py (a/layers.py, b/layers.py)" in \
        rows["dave"]["first_failure"]
    out = capsys.readouterr().out
    assert "| alice | 3/3 (100%) | all passed |" in out
    assert "| bob | 2/3 (67%) | no optim.py in bob; Adam: not found" in out
    assert "1 of 4 passed every layer" in out


def test_a_student_missing_a_file_of_optional_layers_is_graded_on_the_others(tmp_path):
    """rnn_layers.py holds only optional layers: a student without it is graded on layers.py, passes, and the
    RNN's cell is empty; a student with none of the files gets 0 and both names."""
    import csv

    from twinnet.grader import Report, Row
    from twinnet.grader.each import grade_each

    root = tmp_path / "submissions"
    for name in ("ann", "cal", "dan"):
        (root / name).mkdir(parents=True)
        (root / name / "layers.py").write_text("")
    (root / "erin" / "notes").mkdir(parents=True)
    given = {}

    def grade(paths, convention, **kwargs):
        student = kwargs["label"]
        given[student] = [p.name for p in paths]
        if student == "dan":  # his layers.py imports the rnn_layers.py he lacks
            raise TwinnetError("layers.py cannot be loaded: ModuleNotFoundError: No module named 'rnn_layers'")
        failure = "relu #0: dx: relative error 1" if student == "cal" else None  # a failure of its own
        rows = [Row("relu", "ReLU", 0 if failure else 1, 1, 0.0, failure, [failure] if failure else [],
                    0.0 if failure else 1.0),
                Row("rnn_step", "RNN step", 0, 0, 0.0, None, [], 0.0, submitted=False, max_points=0.0)]
        return Report("cs231n", 0, [str(p) for p in paths], rows)

    out_csv = tmp_path / "g.csv"
    results = grade_each(root, [Path("layers.py"), Path("rnn_layers.py")], resolve_convention("cs231n", None),
                         only=None, seed=0, configs=1, csv_path=out_csv, grade=grade)
    assert given == {s: ["layers.py"] for s in ("ann", "cal", "dan")}  # erin, with neither file, is not graded
    ann, cal, dan, erin = results
    assert ann["all_passed"] and ann["points"] == 1.0 and ann["first_failure"] == ""
    assert cal["first_failure"] == "ReLU: relu #0: dx: relative error 1"  # not caused by the missing file: unnamed
    assert dan["first_failure"].startswith("no rnn_layers.py in dan; layers.py cannot be loaded") and dan["points"] == 0
    assert erin["points"] == 0.0 and erin["first_failure"] == "no layers.py; no rnn_layers.py in erin"
    rows = {r["student"]: r for r in csv.DictReader(out_csv.open())}
    assert rows["ann"]["relu"] == "1.0" and rows["erin"]["relu"] == "0.0"
    assert "rnn_step" not in rows["ann"]  # an optional layer no student submitted has no column


def test_a_student_with_a_file_that_cannot_be_loaded_is_graded_on_the_files_that_can(tmp_path, capsys):
    """--each: a student whose optim.py cannot be loaded (a syntax error, or a loop that never ends at its top
    level) keeps the points of layers.py, with the reason first and not every layer passed; one whose layers.py,
    which the other file imports, cannot be loaded gets 0 and both reasons; a single check still refuses it."""
    import csv

    layers, optim = (STUDENTS / "cs231n" / "layers.py").read_text(), (STUDENTS / "cs231n" / "optim.py").read_text()
    root = tmp_path / "submissions"
    files = {"ann/layers.py": layers, "ann/optim.py": optim,
             "ben/layers.py": layers, "ben/optim.py": optim.replace("def adam(", "def adam(:", 1),
             "cat/layers.py": layers + "\nx = (\n", "cat/optim.py": "from layers import *\n" + optim}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    out_csv = tmp_path / "grades.csv"
    code = main(["check", "layers.py", "optim.py", "--each", str(root), "--convention", "cs231n",
                 "--only", "linear,relu,adam", "--configs", "1", "--csv", str(out_csv)])
    assert code == 1
    rows = {r["student"]: r for r in csv.DictReader(out_csv.open())}
    assert rows["ann"]["all_passed"] == "True" and rows["ann"]["points"] == "3.0"
    assert (rows["ben"]["linear"], rows["ben"]["relu"], rows["ben"]["adam"]) == ("1.0", "1.0", "0.0")
    assert rows["ben"]["points"] == "2.0" and rows["ben"]["all_passed"] == "False"
    assert rows["ben"]["first_failure"].startswith("optim.py cannot be loaded: SyntaxError")
    assert "Adam: not found in the submission: adam" in rows["ben"]["first_failure"]
    assert rows["cat"]["points"] == "0.0" and rows["cat"]["all_passed"] == "False"
    assert "layers.py cannot be loaded: SyntaxError" in rows["cat"]["first_failure"]
    assert "optim.py cannot be loaded" in rows["cat"]["first_failure"]
    assert "| ben | 2/3 (67%) | optim.py cannot be loaded: SyntaxError" in capsys.readouterr().out
    # one student checked alone: the file is to be mended, and nothing is graded (exit status 2)
    assert main(["check", str(root / "ben" / "layers.py"), str(root / "ben" / "optim.py"), "--convention",
                 "cs231n", "--only", "linear,relu,adam", "--configs", "1"]) == 2
    assert "optim.py cannot be loaded: SyntaxError" in capsys.readouterr().err


def test_a_file_that_runs_past_the_load_limit_is_left_out_of_its_students_grade(tmp_path, monkeypatch):
    """The child that a file's endless top level ends is told by its path (a file of the same name in another
    folder is still graded), and --each grades the other files; the limits reach the child (a loop that does not
    catch the limit is stopped there, at the limit lowered here, and says so)."""
    from twinnet.grader import loader
    from twinnet.grader.each import grade_each

    monkeypatch.setattr(loader, "LOAD_LIMIT_S", 2.0)  # a margin for the good file's load
    monkeypatch.setattr(loader, "GRACE_S", 0.5)
    root = tmp_path / "submissions"
    caught = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass\n"
    for student, loop in (("dee", caught), ("eve", "while True:\n    pass\n")):
        for part in ("a", "b"):
            (root / student / part).mkdir(parents=True)
        (root / student / "a" / "layers.py").write_text("import numpy as np\n" + RELU)
        (root / student / "b" / "layers.py").write_text(loop)
    dee, eve = grade_each(root, [Path("a/layers.py"), Path("b/layers.py")], resolve_convention("cs231n", None),
                          only=["relu"], seed=0, configs=1, csv_path=None)
    for student in (dee, eve):
        assert student["relu"] == 1.0 and not student["all_passed"]
    assert dee["first_failure"].startswith("b/layers.py cannot be loaded: it ran for more than 2 s and caught")
    assert eve["first_failure"].startswith("b/layers.py cannot be loaded: took more than 2 s to load")


def test_the_class_csv_writes_no_cell_a_spreadsheet_would_run_as_a_formula(tmp_path):
    """Student folders named like formulas (=, +, -, @) are written as text, after a quote, as a spreadsheet
    writes text that begins so; other names and the points are written as they are."""
    import csv

    from twinnet.grader import Report, Row
    from twinnet.grader.each import grade_each

    root = tmp_path / "submissions"
    names = ["=HYPERLINK(\"x.example\",\"y\")", "+1", "-2", "@SUM(A1)", "ann"]
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "layers.py").write_text("")

    def grade(paths, convention, **kwargs):
        return Report("cs231n", 0, [str(p) for p in paths], [Row("relu", "ReLU", 1, 1, 0.0, None, [], 1.0)])

    grade_each(root, [Path("layers.py")], resolve_convention("cs231n", None), only=None, seed=0, configs=1,
               csv_path=tmp_path / "g.csv", grade=grade)
    rows = list(csv.DictReader((tmp_path / "g.csv").open()))
    assert sorted(r["student"] for r in rows) == sorted(("'" + n if n[0] in "=+-@" else n) for n in names)
    assert {r["points"] for r in rows} == {"1.0"}


def test_the_class_csv_leaves_an_optional_layer_not_submitted_empty_and_long_failures_end_at_a_word(tmp_path,
                                                                                                   capsys):
    import csv

    from twinnet.grader import Report, Row
    from twinnet.grader.each import grade_each, shorten

    root = tmp_path / "submissions"
    for name in ("ann", "ben"):
        (root / name).mkdir(parents=True)
        (root / name / "layers.py").write_text("")
    failure = "config #3 n=4: " + "the gradient of the weight is wrong where this convention reads it " * 3

    def grade(paths, convention, **kwargs):
        ann = paths[0].parent.name == "ann"
        rows = [Row("relu", "ReLU", 1, 1, 0.0, None, [], 1.0),
                Row("dropout", "dropout", 0, 1 if ann else 0, 0.0, failure if ann else None, [], 0.0,
                    submitted=ann, max_points=1.0 if ann else 0.0)]
        return Report("cs231n", 0, [str(p) for p in paths], rows)

    out_csv = tmp_path / "g.csv"
    results = grade_each(root, [Path("layers.py")], resolve_convention("cs231n", None), only=None, seed=0,
                         configs=1, csv_path=out_csv, grade=grade)
    rows = {r["student"]: r for r in csv.DictReader(out_csv.open())}
    assert rows["ann"]["dropout"] == "0.0" and rows["ben"]["dropout"] == ""  # failed, against not submitted
    assert rows["ann"]["max_points"] != rows["ben"]["max_points"]
    err = capsys.readouterr().err
    said = next(line for line in err.splitlines() if "ann" in line)
    assert said.endswith("…)") and len(said) < 160
    kept, whole = said[said.index("(") + 1:-2], "dropout: " + failure
    assert whole.startswith(kept) and whole[len(kept)] == " "  # cut where a word ends
    from twinnet.grader.each import format_class

    table = format_class(results, "cs231n")
    assert "| ann | 1/2 (50%) | dropout: config #3 n=4: the gradient" in table and "| ben | 1/1 (100%) |" in table
    assert all(len(cell) <= 140 for line in table.splitlines() for cell in line.split(" | "))
    assert shorten("short", 10) == "short" and shorten("a" * 30, 10) == "a" * 9 + "…"  # no space: cut where it falls
    assert shorten("one two three four", 12) == "one two…"


def test_what_students_print_goes_to_stderr_after_their_names_and_stdout_keeps_the_grades(tmp_path, capsys,
                                                                                           monkeypatch):
    """--each: a student's debug prints (lines arriving in pieces too) go to stderr, each line after the
    student's name, so that the class table on stdout can be piped."""
    from twinnet.grader.child import _show_some

    class Pieces:  # a pipe that delivers lines cut anywhere
        def __init__(self, chunks):
            self.chunks = list(chunks)

        def read1(self, n):
            return self.chunks.pop(0) if self.chunks else b""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    _show_some(Pieces([b"ab", b"c\nde", b"f\n", b"\n", b"g"]), "erin")
    _show_some(Pieces([b"plain\n"]))
    _show_some(Pieces([b"x\n"]), "two\nlines")  # a folder name with a newline: one prefix still
    _show_some(Pieces([b"\x1b[2J\x07cleared\tnot\r\n", "\x9b2J é\n".encode()]))  # no terminal control: as "?"
    # whole lines only, so that students graded at once (--jobs) never share one; an unended last line ends
    assert capsys.readouterr().err == ("[erin] abc\n[erin] def\n[erin] \n[erin] g\nplain\n[two?lines] x\n"
                                       "?[2J?cleared\tnot\n?2J é\n")
    written = []
    monkeypatch.setattr("twinnet.grader.child._write_stderr", written.append)
    monkeypatch.setattr("twinnet.grader.child.SHOWN_BYTES", 40)
    _show_some(Pieces([b"ab", b"c\nd", b"ef\ng\n" * 10]), "erin")  # 65 bytes printed: 40 shown, prefixes counted
    assert written[:2] == [b"[erin] abc\n", b"[erin] def\n"] and sum(map(len, written)) <= 40 + 1
    assert "erin printed" in capsys.readouterr().err
    monkeypatch.undo()
    root = tmp_path / "submissions"
    for name, extra in (("erin", "    print('shape', x.shape)\n"), ("finn", "")):
        (root / name).mkdir(parents=True)
        (root / name / "layers.py").write_text("import numpy as np\n" + RELU.replace("def relu_forward(x):\n",
                                                                                "def relu_forward(x):\n" + extra))
    assert main(["check", "layers.py", "--each", str(root), "--convention", "cs231n", "--only", "relu",
                 "--configs", "1"]) == 0
    out, err = capsys.readouterr()
    assert "shape" not in out and "| erin | 1/1 (100%) | all passed |" in out
    assert "| finn | 1/1 (100%) | all passed |" in out
    printed = [line for line in err.splitlines() if "shape" in line]
    assert printed and all(line.startswith("[erin] shape (") for line in printed), err


def test_jobs_grade_students_at_once_and_keep_their_order(tmp_path, capsys):
    """--jobs 2: two students' gradings overlap in time, and the results (and the CSV) keep the students'
    order, whichever finished first."""
    import threading

    from twinnet.grader import Report, Row
    from twinnet.grader.each import grade_each

    root = tmp_path / "submissions"
    for name in ("ann", "ben", "cat"):
        (root / name).mkdir(parents=True)
        (root / name / "layers.py").write_text("")
    running, most, lock = [0], [0], threading.Lock()
    both = threading.Barrier(2, timeout=30)

    def grade(paths, convention, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        student = paths[0].parent.name
        if student in ("ann", "ben"):
            both.wait()  # returns only once the other one is being graded too
        if student == "ann":
            time.sleep(0.2)  # ann most likely finishes after ben: the order kept is the students' either way
        with lock:
            running[0] -= 1
        return Report("cs231n", 0, [str(p) for p in paths], [Row("relu", "ReLU", 1, 1, 0.0, None, [], 1.0)])

    results = grade_each(root, [Path("layers.py")], resolve_convention("cs231n", None), only=["relu"], seed=0,
                         configs=1, csv_path=tmp_path / "g.csv", jobs=2, grade=grade)
    assert most[0] == 2 and [r["student"] for r in results] == ["ann", "ben", "cat"]
    assert [line.split(",")[0] for line in (tmp_path / "g.csv").read_text().splitlines()[1:]] == ["ann", "ben", "cat"]
    capsys.readouterr()
    for argv, message in [(["--jobs", "2"], "--jobs grades several students at once: it goes with --each"),
                          (["--each", str(root), "--jobs", "0"], "--jobs must be >= 1"),
                          (["--each", str(root), "--jobs", "100000"], "--jobs 100000 is more than 8x this machine's")]:
        assert main(["check", "layers.py", "--convention", "cs231n", *argv]) == 2
        assert message in capsys.readouterr().err


def test_an_interrupted_class_keeps_the_grades_given_and_bad_class_options_are_refused(tmp_path, capsys):
    from twinnet.grader import Report, Row
    from twinnet.grader.each import grade_each

    root = _class(tmp_path / "submissions")
    graded = []

    def grade(paths, convention, **kwargs):  # the second student's grading is interrupted (Ctrl-C)
        graded.append(paths)
        if len(graded) == 2:
            raise KeyboardInterrupt
        return Report("cs231n", 0, [str(p) for p in paths], [Row("linear", "linear (affine)", 1, 1, 0.0, None, [], 1.0)])

    out_csv = tmp_path / "grades.csv"
    with pytest.raises(KeyboardInterrupt):
        grade_each(root, [Path("layers.py"), Path("optim.py")], resolve_convention("cs231n", None), only=["linear"],
                   seed=0, configs=1, csv_path=out_csv, grade=grade)
    assert graded[0] == [root / "alice" / "cs231n" / "layers.py", root / "alice" / "optim.py"]
    assert out_csv.read_text().splitlines()[1].startswith("alice,1.0,1.0,True,")
    base = ["check", "layers.py", "--convention", "cs231n"]
    for extra, message in [(["--csv", str(out_csv)], "--csv writes a class's grades: it goes with --each"),
                           (["--each", str(root), "--json", str(tmp_path / "g.json")], "the grades go to --csv"),
                           (["--each", str(tmp_path / "none")], "does not exist"),
                           (["--each", str(root / "bob")], "holds no student folders"),
                           (["--each", str(root), "--csv", str(root / "bob" / "layers.py")], "is not a grade file")]:
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err, extra
    assert main(["check", str(root / "bob" / "layers.py"), "--each", str(root), "--convention", "cs231n"]) == 2
    assert "must be a file's name" in capsys.readouterr().err
    assert (root / "bob" / "layers.py").read_text().startswith(("import", '"""', "from", "#"))  # nothing replaced


def test_references_keep_autograd_when_a_submission_switches_it_off_for_the_process(tmp_path):
    """A file that runs ``torch.set_grad_enabled(False)`` when it is loaded must not fail the grader's own
    references (computed with autograd): the correct layers pass."""
    source = (STUDENTS / "cs231n" / "layers.py").read_text()
    (tmp_path / "layers.py").write_text("import torch\ntorch.set_grad_enabled(False)\n" + source)
    report = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["linear", "softmax_loss"])
    assert all(r.total > 0 and r.passed == r.total for r in report.rows), [r.failures for r in report.rows]
    import torch

    assert torch.is_grad_enabled()  # the switch as it was before the file was loaded


def test_a_file_that_puts_its_own_object_in_sys_stdouts_place_is_graded_without_a_traceback(tmp_path, capsys):
    """A log-to-file class as ``sys.stdout`` (write and flush, no ``closed``): the grade, and no traceback."""
    tee = ("import sys\n\nclass Tee:\n    def __init__(self, out):\n        self.out = out\n"
           "    def write(self, s):\n        return self.out.write(s)\n"
           "    def flush(self):\n        self.out.flush()\n\n"
           "sys.stdout = Tee(sys.stdout)\n\n")
    (tmp_path / "layers.py").write_text("import numpy as np\n" + tee + RELU)
    assert main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--only", "relu"]) == 0
    out, err = capsys.readouterr()  # what the grading child printed is shown on stderr
    assert "| ReLU | 8/8 |" in out and "Traceback" not in out + err and "closed" not in out + err, out


def test_the_mlps_starting_weights_follow_the_grading_seed_not_torchs_global_stream():
    """``--seed`` reproduces a failure: the whole MLP's starting weights come from it, whatever torch's own
    random stream holds."""
    import torch

    files = [STUDENTS / "uva" / "modules.py", STUDENTS / "uva" / "mlp_numpy.py"]
    worst = []
    for torch_seed in (1, 2):
        torch.manual_seed(torch_seed)
        row = grade(files, resolve_convention("uva", None), only=["mlp"], seed=3).rows[0]
        assert row.total > 0 and row.passed == row.total, row.failures
        worst.append(row.worst_error)
    assert worst[0] == worst[1] > 0


def test_a_file_that_takes_its_own_folder_off_the_path_is_graded(tmp_path):
    source = (STUDENTS / "cs231n" / "layers.py").read_text()
    (tmp_path / "layers.py").write_text(f"import sys\nsys.path.remove({str(tmp_path)!r})\n" + source)
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["relu"]).rows[0]
    assert row.total > 0 and row.passed == row.total, row.failures


def test_a_softmax_loss_whose_probability_underflows_before_its_log_is_told_why(tmp_path):
    """``-log(probs[y])`` is inf on logits of size 1000, where the true class's probability underflows to 0:
    the failure says so and what to compute instead; the log-sum-exp form passes."""
    source = (STUDENTS / "cs231n" / "layers.py").read_text()
    naive = "loss = -np.sum(np.log(probs[np.arange(N), y])) / N"
    (tmp_path / "layers.py").write_text(source.replace("loss = -np.sum(log_probs[np.arange(N), y]) / N", naive))
    assert naive in (tmp_path / "layers.py").read_text()
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["softmax_loss"]).rows[0]
    assert 0 < row.passed < row.total
    assert "a probability that underflowed to 0" in row.first_failure, row.failures


def test_a_uva_weight_created_in_out_as_2018_19_students_did_is_graded_in_that_layout(tmp_path):
    """UvA's students create their weights themselves, and in 2018-19 many laid them out (in, out) with
    ``x @ W``: the linear layer (square ones too) and the MLP pass in that layout."""
    source = (STUDENTS / "uva" / "modules.py").read_text()
    for old, new in (("size=(out_features, in_features)", "size=(in_features, out_features)"),
                     ("np.zeros((out_features, in_features))", "np.zeros((in_features, out_features))"),
                     ("x @ self.params['weight'].T", "x @ self.params['weight']"),
                     ("dout.T @ self.x", "self.x.T @ dout"), ("dout @ self.params['weight']\n",
                                                              "dout @ self.params['weight'].T\n")):
        assert old in source, old
        source = source.replace(old, new)
    (tmp_path / "modules.py").write_text(source)
    (tmp_path / "mlp_numpy.py").write_text((STUDENTS / "uva" / "mlp_numpy.py").read_text())
    report = grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention("uva", None),
                   only=["linear", "mlp"], configs=6)
    assert all(r.total and r.passed == r.total for r in report.rows), [r.failures for r in report.rows]
    # a spec of the same course (one-hot targets, say) may leave the weight's layout open as the built-in does
    spec = tmp_path / "uva2018.toml"
    spec.write_text('style = "module"\nparams = "dict"\ngrads = "overwrite"\n'
                    '[layers.linear]\nclass = "LinearModule"\nweight = "any"\nbias = "any"\n'
                    '[layers.mlp]\nclass = "MLP"\nlinear = "LinearModule"\noutput = "probabilities"\n')
    report = grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention(None, spec), configs=6)
    assert all(r.total and r.passed == r.total for r in report.rows), [r.failures for r in report.rows]
    spec.write_text(spec.read_text().replace('weight = "any"', 'weight = "out_in"'))  # the layout fixed: it fails
    assert not grade([tmp_path / "modules.py"], resolve_convention(None, spec), only=["linear"], configs=6).ok


@pytest.mark.parametrize("shape", ["flat", "row", "column"])
def test_a_uva_bias_in_any_layout_the_student_created_is_graded_in_that_layout(shape, tmp_path):
    """UvA's students create their parameters themselves: (out,), (1, out) or (out, 1) biases all pass."""
    source = (STUDENTS / "uva" / "modules.py").read_text()
    zeros = {"flat": "np.zeros(out_features)", "row": "np.zeros((1, out_features))",
             "column": "np.zeros((out_features, 1))"}[shape]
    bias = {"flat": "self.params['bias']", "row": "self.params['bias']", "column": "self.params['bias'].T"}[shape]
    grad = {"flat": "np.sum(dout, axis=0)", "row": "np.sum(dout, axis=0, keepdims=True)",
            "column": "np.sum(dout, axis=0, keepdims=True).T"}[shape]
    for old, new in (("np.zeros((1, out_features))", zeros), ("+ self.params['bias']", f"+ {bias}"),
                     ("np.sum(dout, axis=0, keepdims=True)", grad)):
        assert old in source
        source = source.replace(old, new)
    (tmp_path / "modules.py").write_text(source)
    (tmp_path / "mlp_numpy.py").write_text((STUDENTS / "uva" / "mlp_numpy.py").read_text())
    report = grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention("uva", None),
                   only=["linear", "mlp"])
    assert all(r.total and r.passed == r.total for r in report.rows), [r.first_failure for r in report.rows]


def test_a_functional_elu_is_graded_from_a_spec(tmp_path):
    """``elu_forward(x, alpha) -> (out, cache)`` and ``elu_backward(dout, cache)``, CS231n's style."""
    code = ("import numpy as np\n"
            "def elu_forward(x, alpha):\n    return np.where(x > 0, x, alpha * np.expm1(x)), (x, alpha)\n"
            "def elu_backward(dout, cache):\n    x, alpha = cache\n"
            "    return dout * np.where(x > 0, 1.0, alpha * np.exp(x))\n")
    (tmp_path / "layers.py").write_text(code)
    (tmp_path / "spec.toml").write_text('style = "functional"\n[layers.elu]\nforward = "elu_forward"\n'
                                        'backward = "elu_backward"\n')
    from twinnet.grader.conventions import load_spec

    row = grade([tmp_path / "layers.py"], load_spec(tmp_path / "spec.toml")).rows[0]
    assert row.kind == "elu" and row.passed == row.total > 0, row.failures
    (tmp_path / "layers.py").write_text(code.replace("alpha * np.expm1(x)", "np.expm1(x)"))  # alpha ignored
    row = grade([tmp_path / "layers.py"], load_spec(tmp_path / "spec.toml")).rows[0]
    assert 0 < row.passed < row.total and "out: relative error" in row.first_failure


@pytest.mark.parametrize("convention", ["uva", "cs324"])
def test_a_loss_written_for_the_other_target_layout_is_told_so(convention, tmp_path):
    """UvA's 2019 students took one-hot targets where the convention gives labels; cs324's the reverse: the
    grader names the layout instead of a relative error or a broadcasting error."""
    if convention == "uva":
        path, source = tmp_path / "modules.py", (STUDENTS / "uva" / "modules.py").read_text()
        old = ("        out = -np.mean(np.log(x[np.arange(N), y]))\n",
               "        dx[np.arange(N), y] = -1.0 / (N * x[np.arange(N), y])\n")
        new = ("        out = -np.sum(y * np.log(x)) / N\n", "        dx = -y / (N * x)\n")
        files = [path]
    else:
        files = [tmp_path / p.name for p in CS324]
        path, source = files[0], CS324[0].read_text()
        for extra, target in zip(CS324[1:], files[1:]):
            target.write_text(extra.read_text())
        old = ("        return -np.sum(y * np.log(x)) / N\n", "        return (x - y) / N\n")
        new = ("        return -np.sum(np.log(x[np.arange(N), y])) / N\n",
               "        return (x - np.eye(x.shape[1])[y]) / N\n")
    for a, b in zip(old, new):
        assert a in source, a
        source = source.replace(a, b)
    path.write_text(source)
    row = grade(files, resolve_convention(convention, None), only=["softmax_cross_entropy"]).rows[0]
    other = "one-hot targets" if convention == "uva" else "integer labels"
    assert row.passed < row.total and f"takes {other}, and this convention gives" in row.first_failure, row.failures


def test_a_loss_clamped_below_one_passes_on_huge_logits_and_is_not_taken_for_one_hot(tmp_path):
    """UvA 2021 students clamped p to [1e-10, 1 - 1e-10]: on huge logits (labels each sample's most probable
    class, loss ~0) that shows only as 1e-10 in a loss of 0, which is not graded there; the clamp at 1e-10 still
    fails where the true class's probability is ~1e-22, and there only, at every seed."""
    source = (STUDENTS / "uva" / "modules.py").read_text()
    old = "np.log(x[np.arange(N), y])"
    assert old in source
    (tmp_path / "modules.py").write_text(source.replace(old, "np.log(np.clip(x[np.arange(N), y], 1e-10, 1 - 1e-10))"))
    # whatever the secret seed: no ordinary configuration puts a label below 1e-2 (at 64 and 191 the logits of
    # size 1000 already had every label its sample's most probable class)
    for seed in [*range(6), 64, 191]:
        row = grade([tmp_path / "modules.py"], resolve_convention("uva", None), only=["softmax_cross_entropy"],
                    seed=seed).rows[0]
        assert [f.split(":")[0] for f in row.failures] == [  # the last configuration (6 drawn after 3 fixed)
            "softmax_cross_entropy #9 n=3 c=4 scale=1.0 confidently_wrong=True"]
        assert ("guarded by 1e-10 (log(p + 1e-10), or p clipped at 1e-10), which caps each sample's loss at "
                "-log(1e-10) = 23") in row.failures[0], row.failures


def test_an_error_just_above_the_tolerance_is_shown_to_enough_digits():
    from twinnet.grader import _above_tolerance
    from twinnet.grader.compare import RTOL, passes

    assert _above_tolerance(3.2e-3) == "3.20e-03"
    just = RTOL * (1 + 1e-9)
    assert not passes(just) and _above_tolerance(just) == f"{just:.6e} (just above the tolerance, 1e-07)"


# the layers CS231n's students wrote in some years only: optional kinds of the cs231n convention
OPTIONAL = {"dropout": ("dropout", "dropout_forward", "dropout_backward"),
            "batchnorm_alt": ("batch norm, alternative backward", "batchnorm_backward_alt"),
            "spatial_batchnorm": ("spatial batch norm", "spatial_batchnorm_forward", "spatial_batchnorm_backward"),
            "layernorm": ("layer norm", "layernorm_forward", "layernorm_backward"),
            "spatial_groupnorm": ("spatial group norm", "spatial_groupnorm_forward", "spatial_groupnorm_backward"),
            "word_embedding": ("word embedding", "word_embedding_forward", "word_embedding_backward"),
            "mlp": ("whole fully connected net, loss and gradients", "FullyConnectedNet"),
            "convnet": ("whole ConvNet, loss and gradients", "ThreeLayerConvNet")}
NOT_SUBMITTED = "| - | - | not in the files (optional in this convention) | - |"


def _without(source: str, *names: str) -> str:
    """``source`` with its top-level functions or classes ``names`` removed (a year of the course that had no such
    layer)."""
    lines = source.splitlines(keepends=True)
    found = [n for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names]
    for node in sorted(found, key=lambda n: -n.lineno):
        del lines[node.lineno - 1:node.end_lineno]
    return "".join(lines)


def test_an_older_years_files_without_the_optional_layers_pass_and_those_rows_count_nothing(tmp_path, capsys):
    """Files of a year before layer norm, group norm, ...: those rows are shown as not submitted, worth 0 of 0
    points, and the verdict is that of the layers the files have (through the CLI and its JSON)."""
    files = []
    for f in CS231N:
        files.append(tmp_path / f.name)
        files[-1].write_text(_without(f.read_text(), *(name for _, *names in OPTIONAL.values() for name in names)))
    assert "def dropout_forward" not in files[0].read_text() and "def affine_forward" in files[0].read_text()
    out_json = tmp_path / "grade.json"
    assert main(["check", *map(str, files), "--convention", "cs231n", "--configs", "1", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    for title, *_ in OPTIONAL.values():
        assert f"| {title} {NOT_SUBMITTED}" in out, out
    assert out.rstrip().endswith("all passed: 14/14 points")
    grades = json.loads(out_json.read_text())
    assert grades["ok"] is True and grades["points"] == grades["max_points"] == 14
    absent = {r["kind"]: r for r in grades["layers"] if not r["submitted"]}
    assert set(absent) == set(OPTIONAL)
    assert all(r["points"] == r["max_points"] == 0 and r["first_failure"] is None for r in absent.values())
    # a submission that cannot be graded at all loses the 9 points it had to earn, not the optional ones (the
    # recurrent layers among them, written in NumPy until 2024, and the SVM loss, gone from the course in 2025)
    (tmp_path / "exits.py").write_text("import os\nos._exit(0)\n")
    assert main(["check", str(tmp_path / "exits.py"), "--convention", "cs231n", "--json", str(out_json)]) == 2
    assert json.loads(out_json.read_text())["max_points"] == 9
    # ... and not a layer the course gives (graded = false in a spec): 8
    (tmp_path / "given.toml").write_text('base = "cs231n"\n[layers.softmax_loss]\ngraded = false\n')
    assert main(["check", str(tmp_path / "exits.py"), "--spec", str(tmp_path / "given.toml"), "--json",
                 str(out_json)]) == 2
    assert json.loads(out_json.read_text())["max_points"] == 8


def test_files_of_2025_without_the_numpy_recurrent_layers_pass_on_the_layers_they_have(tmp_path, capsys):
    """CS231n moved its RNN and LSTM to PyTorch in 2025 (forward only): assignment 2's NumPy files without them
    are graded on what they have, the recurrent rows shown as not submitted."""
    layers = [f for f in CS231N if f.name == "layers.py"]
    assert layers and "def rnn_step_forward" not in layers[0].read_text()
    assert main(["check", str(layers[0]), "--convention", "cs231n", "--configs", "1",
                 "--only", "linear,softmax_loss,rnn_step"]) == 1  # named with --only: required, and absent
    capsys.readouterr()
    assert main(["check", str(layers[0]), str(STUDENTS / "cs231n" / "optim.py"), "--convention", "cs231n",
                 "--configs", "1"]) == 0
    out = capsys.readouterr().out
    for title in ("RNN step", "LSTM step"):
        assert any(line.startswith(f"| {title}") and NOT_SUBMITTED in line for line in out.splitlines()), out
    # 2026's layers.py has no svm_loss either (assignment 1 dropped the SVM in 2025)
    assert "def svm_loss" in layers[0].read_text() and any(line.startswith("| SVM") for line in out.splitlines())
    (tmp_path / "layers.py").write_text(_without(layers[0].read_text(), "svm_loss"))
    assert main(["check", str(tmp_path / "layers.py"), str(STUDENTS / "cs231n" / "optim.py"), "--convention",
                 "cs231n", "--configs", "1"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("| SVM") and NOT_SUBMITTED in line for line in out.splitlines()), out


def test_an_optional_layer_of_which_only_some_functions_are_there_fails_naming_the_missing_ones(tmp_path):
    (tmp_path / "course.toml").write_text(
        'style = "functional"\n[layers.relu]\nforward = "relu_forward"\nbackward = "relu_backward"\n'
        '[layers.dropout]\nforward = "dropout_forward"\nbackward = "dropout_backward"\noptional = true\n')
    convention = resolve_convention(None, tmp_path / "course.toml")
    (tmp_path / "layers.py").write_text(_without(CS231N[0].read_text(), "dropout_backward"))
    report = grade([tmp_path / "layers.py"], convention, configs=1)
    dropout = _rows(report)["dropout"]
    assert dropout.submitted and dropout.max_points == 1 and dropout.total == 0
    assert dropout.first_failure == "not found in the submission: dropout_backward"
    assert not report.ok and _rows(report)["relu"].passed == _rows(report)["relu"].total > 0
    (tmp_path / "layers.py").write_text(_without(CS231N[0].read_text(), "dropout_backward", "dropout_forward"))
    report = grade([tmp_path / "layers.py"], convention, configs=1)
    assert report.ok and not _rows(report)["dropout"].submitted  # both missing: not submitted


def test_only_an_absent_optional_layer_makes_it_required(tmp_path, capsys):
    (tmp_path / "layers.py").write_text("import numpy as np\n" + RELU)
    assert main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--only", "relu,dropout"]) == 1
    out = capsys.readouterr().out
    assert "| dropout | 0/0 | - | not found in the submission: dropout_forward, dropout_backward | 0/1 |" in out
    assert out.rstrip().endswith("FAILED: 1/2 points")
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["dropout"]).rows[0]
    assert row.submitted and row.max_points == 1 and "not found in the submission" in row.first_failure


def test_after_a_layer_ends_the_grading_process_the_optional_layers_graded_by_a_new_one_stay_optional(tmp_path,
                                                                                                     capsys):
    """A new process grades the layers after the one that ended the first: it is given them as the convention's
    layers, not as --only (which would make an absent optional one a failure)."""
    (tmp_path / "layers.py").write_text("import numpy as np\n" + RELU.replace(
        "    return np.maximum", "    import os; os._exit(0)\n    return np.maximum"))
    assert main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--configs", "1"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"\| ReLU \| 0/1 \| .*the submission ended the grading process", out), out
    assert f"| dropout {NOT_SUBMITTED}" in out and f"| word embedding {NOT_SUBMITTED}" in out, out
    assert "| linear (affine) | 0/0 | - | not found in the submission: affine_forward, affine_backward |" in out
    assert out.rstrip().endswith("FAILED: 0/9 points")  # the required layers only


def test_a_dropout_whose_p_is_the_drop_probability_passes_under_a_spec_that_says_so(tmp_path):
    """CS231n's p was the drop probability up to 2017 (``p = "drop"``), the keep probability since: each
    submission passes under its own meaning and is told the other's name under the other."""
    spec = tmp_path / "cs231n-2017.toml"
    spec.write_text('style = "functional"\n[layers.dropout]\nforward = "dropout_forward"\n'
                    'backward = "dropout_backward"\np = "drop"\n')
    drop = grade([STUDENTS / "bugs" / "cs231n_dropout_drop.py"], resolve_convention(None, spec), configs=2).rows[0]
    assert drop.passed == drop.total > 0, drop.failures
    keep = grade([CS231N[0]], resolve_convention(None, spec), configs=2).rows[0]
    assert keep.total > 0 and keep.passed == 0
    assert "p is taken as the keep probability, where this convention's p is the drop probability" in keep.first_failure


@pytest.mark.parametrize("right, wrong, named", [
    ("(np.random.rand(*x.shape) < p) / p", "(np.random.rand(*x.shape) < p) / p ** 2",
     "the kept values are x times 1.562; inverted dropout divides them by the keep probability 0.8"),
    ("(np.random.rand(*x.shape) < p) / p", "(np.random.rand(*x.shape) < p * p) / p",  # keeps p², scales by 1 / p
     "of the values at p = 0.8, where the keep probability is 0.8 (+-0.006: 5 standard deviations)"),
    ("'seed' in dropout_param", "'seed' in dropout_param and False",  # the seed ignored
     "the same dropout_param['seed'] gave another mask on a second call"),
    ("out = x * mask", "out = x.copy()", "train mode dropped none of the values at p = 0.8"),
    ("dx = dout * mask", "dx = dout", "dx (train mode): relative error"),
    ("out = x\n", "out = x * p\n", "test mode multiplied x by the keep probability 0.8"),  # vanilla dropout's test mode
    ("(np.random.rand(*x.shape) < p) / p", "(np.random.rand(*x.shape) < p) / (p * 0.99999)",  # digits that differ
     "the kept values are x times 1.25001; inverted dropout divides them by the keep probability 0.8 (x times 1.25)"),
])
def test_a_dropout_wrong_in_other_ways_is_told_what(right, wrong, named, tmp_path):
    source = CS231N[0].read_text()
    assert source.count(right) == 1
    (tmp_path / "layers.py").write_text(source.replace(right, wrong))
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["dropout"], configs=1).rows[0]
    assert row.total > 0 and row.passed == 0 and named in row.first_failure, row.failures


def test_a_pool_that_refuses_windows_the_course_rules_out_is_never_given_one(tmp_path):
    """CS231n and EECS 498 let a naive pool assume (H - pool_height) % stride == 0: students who raise
    otherwise are right, so no configuration, fixed or drawn, breaks it."""
    source = CS231N[0].read_text()
    old = "    H_out = 1 + (H - ph) // stride\n"
    assert source.count(old) == 1
    (tmp_path / "layers.py").write_text(source.replace(old, "    if (H - ph) % stride or (W - pw) % stride:\n"
                                        "        raise ValueError('windows do not tile the input')\n" + old))
    for seed in range(3):
        row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["maxpool"], configs=8,
                    seed=seed).rows[0]
        assert row.total > 8 and row.passed == row.total, row.failures


def test_a_convolution_that_refuses_windows_the_course_rules_out_is_never_given_one(tmp_path):
    """As for pooling: CS231n's naive convolution may assume (H + 2 pad - HH) % stride == 0 (EECS 498 students
    loop to H_pad - HH + stride, which overruns otherwise), so no configuration, fixed or drawn, breaks it."""
    source = CS231N[0].read_text()
    old = "    H_out = 1 + (H + 2 * pad - HH) // stride\n"
    assert source.count(old) == 1
    (tmp_path / "layers.py").write_text(source.replace(old, "    if (H + 2 * pad - HH) % stride or (W + 2 * pad - WW)"
                                        " % stride:\n        raise ValueError('windows do not tile the input')\n"
                                        + old))
    for seed in range(3):
        row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["conv"], configs=8,
                    seed=seed).rows[0]
        assert row.total > 8 and row.passed == row.total, row.failures


def test_a_group_norm_written_for_a_flat_gamma_as_the_2018_19_docstring_says_passes(tmp_path):
    """CS231n's 2018-19 docstring gave gamma and beta as (C,), its notebook passed (1, C, 1, 1): a layer that
    indexes a flat gamma passes on (C,), and a real bug in it still fails, told by the layout under which more of
    its quantities pass (the flat one: dbeta's factor, not the (1, C, 1, 1) layout's misshapen out)."""
    whole = CS231N[0].read_text()
    start = whole.index("def spatial_groupnorm_forward")
    end = whole.index("\ndef ", whole.index("def spatial_groupnorm_backward"))
    source = whole[start:end]  # the group norm's two functions
    flat = [("    out = gamma * x_hat + beta\n", "    out = gamma[np.newaxis, :, np.newaxis, np.newaxis] * x_hat + "
             "beta[np.newaxis, :, np.newaxis, np.newaxis]\n"),
            ("    dbeta = np.sum(dout, axis=(0, 2, 3), keepdims=True)\n", "    dbeta = np.sum(dout, axis=(0, 2, 3))\n"),
            ("    dgamma = np.sum(dout * x_hat, axis=(0, 2, 3), keepdims=True)\n",
             "    dgamma = np.sum(dout * x_hat, axis=(0, 2, 3))\n"),
            ("    dx_hat = (dout * gamma).reshape", "    dx_hat = (dout * gamma[np.newaxis, :, np.newaxis, np.newaxis]).reshape")]
    for old, new in flat:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    source = whole[:start] + source + whole[end:]
    for text, ok in ((source, True), (source.replace("dbeta = np.sum(dout, axis=(0, 2, 3))", "dbeta = np.sum(dout, "
                                                     "axis=(0, 2, 3)) * 2"), False)):
        (tmp_path / "layers.py").write_text(text)
        row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["spatial_groupnorm"],
                    configs=4).rows[0]
        if ok:
            assert row.total > 4 and row.passed == row.total, row.failures
        else:
            told = row.first_failure
            assert row.passed == 0 and "dbeta: relative error" in told and "exactly 2 times" in told, row.failures


def test_a_dropout_mask_in_float32_is_not_a_bug(tmp_path):
    """1 / keep rounded to float32 (EECS 498 students' ``(torch.rand(...) < keep).float() / keep``) is 2e-8 off."""
    source = CS231N[0].read_text()
    right = "(np.random.rand(*x.shape) < p) / p"
    assert source.count(right) == 1
    (tmp_path / "layers.py").write_text(source.replace(right, f"({right}).astype(np.float32)"))
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["dropout"], configs=6).rows[0]
    assert row.total > 0 and row.passed == row.total, row.failures
    from twinnet.grader.kinds import KINDS

    fixed = KINDS["dropout"].configs(np.random.default_rng(0), 0)  # graded first, whatever the seed
    assert any(float(np.float32(1 / c["keep"])) != 1 / c["keep"] for c in fixed)  # a scale float32 cannot hold exactly


def test_a_backward_may_return_its_one_gradient_in_a_list_and_group_norm_its_gradients_flat(tmp_path):
    """A word embedding's ``[dW]`` is its dW, as ``(dW,)`` is; group norm's dgamma and dbeta may be (C,), as
    CS231n's 2018 docstring gave them, or gamma's (1, C, 1, 1)."""
    rnn = CS231N[1].read_text()
    assert rnn.count("    return dW\n") == 1
    (tmp_path / "rnn_layers.py").write_text(rnn.replace("    return dW\n", "    return [dW]\n"))
    layers = CS231N[0].read_text()
    assert layers.count("    return dx, dgamma, dbeta\n") > 1
    at = layers.index("def spatial_groupnorm_backward")
    end = layers.index("    return dx, dgamma, dbeta\n", at)
    (tmp_path / "layers.py").write_text(layers[:end] + "    return dx, dgamma.reshape(-1), dbeta.ravel()\n"
                                        + layers[end + len("    return dx, dgamma, dbeta\n"):])
    report = grade([tmp_path / "layers.py", tmp_path / "rnn_layers.py"], resolve_convention("cs231n", None),
                   only=["word_embedding", "spatial_groupnorm"], configs=2)
    assert all(r.passed == r.total > 0 for r in report.rows), [r.failures for r in report.rows]


def test_an_optional_layer_is_submitted_by_its_own_names_not_those_it_shares_with_another_layer(tmp_path):
    """A UvA-style course with an optional MLP: the MLP's Linear is the linear layer's class, so a file with
    only the layers has no MLP submitted."""
    spec = tmp_path / "course.toml"
    spec.write_text('style = "module"\nparams = "dict"\ngrads = "overwrite"\n'
                    '[layers.linear]\nclass = "LinearModule"\nweight = "out_in"\nbias = "any"\n'
                    '[layers.mlp]\nclass = "MLP"\nlinear = "LinearModule"\noutput = "probabilities"\noptional = true\n')
    modules = STUDENTS / "uva" / "modules.py"
    report = grade([modules], resolve_convention(None, spec), configs=1)
    rows = _rows(report)
    assert not rows["mlp"].submitted and rows["linear"].passed == rows["linear"].total > 0 and report.ok


def test_a_flat_gradient_of_a_row_bias_passes_the_linear_layer_and_the_mlp_and_of_a_column_bias_fails(tmp_path):
    """UvA 2024: a (1, M) bias whose gradient is dout.sum(axis=0), (M,): the SGD step broadcasts it to the same
    update. A (M, 1) column bias with a flat gradient would broadcast to (M, M), so it still fails, by shape."""
    spec = tmp_path / "course.toml"
    spec.write_text('style = "module"\nparams = "dict"\ngrads = "overwrite"\n'
                    '[layers.linear]\nclass = "LinearModule"\nweight = "out_in"\nbias = "any"\n'
                    '[layers.mlp]\nclass = "MLP"\nlinear = "LinearModule"\noutput = "probabilities"\n')
    modules = (STUDENTS / "uva" / "modules.py").read_text()
    keep = "self.grads['bias'] = np.sum(dout, axis=0, keepdims=True)"
    assert keep in modules
    (tmp_path / "modules.py").write_text(modules.replace(keep, "self.grads['bias'] = np.sum(dout, axis=0)"))
    (tmp_path / "mlp_numpy.py").write_text(UVA[1].read_text())
    files = [tmp_path / "modules.py", tmp_path / "mlp_numpy.py"]
    report = grade(files, resolve_convention(None, spec), only=["linear", "mlp"], configs=3)
    assert all(r.passed == r.total > 0 for r in report.rows), [r.failures for r in report.rows]
    column = modules.replace("np.zeros((1, out_features))", "np.zeros((out_features, 1))").replace(
        "+ self.params['bias']", "+ self.params['bias'].T").replace(keep, "self.grads['bias'] = np.sum(dout, axis=0)")
    assert column.count("(out_features, 1)") == 2
    (tmp_path / "modules.py").write_text(column)
    rows = _rows(grade(files, resolve_convention(None, spec), only=["linear"], configs=3))
    assert rows["linear"].passed == 0 and "has shape (" in rows["linear"].failures[0]


def test_the_notebook_check_leaves_numpys_global_generator_as_it_was(capsys):
    """The starter code's dropout seeds np.random with the grader's seeds: the notebook's stream goes on."""
    from twinnet.grader import check

    namespace = {}
    exec(compile(CS231N[0].read_text(), str(CS231N[0]), "exec"), namespace)
    np.random.seed(7)
    expected = np.random.rand(3)
    np.random.seed(7)
    report = check(namespace, "dropout", configs=1)
    assert report.ok and np.array_equal(np.random.rand(3), expected)


# CMU 11-785's mytorch style: parameters and gradients as plain attributes, classes without some arguments
MYTORCH_SPEC = '''name = "mytorch"
style = "module"
[layers.linear]
class = "Linear"
weight = "out_in"
bias = "column"
params = {weight = "W", bias = "b"}
grads = {weight = "dLdW", bias = "dLdb"}
[layers.relu]
class = "ReLU"
derivative = true
[layers.conv]
class = "Conv2d"
params = {weight = "conv2d_stride1.W", bias = "conv2d_stride1.b"}
grads = {weight = "conv2d_stride1.dLdW", bias = "conv2d_stride1.dLdb"}
[layers.maxpool]
class = "MaxPool2d_stride1"
args = ["kernel_size"]
[layers.batchnorm]
class = "BatchNorm1d"
params = {weight = "BW", bias = "Bb"}
grads = {weight = "dLdBW", bias = "dLdBb"}
running = {mean = "running_M", var = "running_V"}
eval_keyword = "eval"
layout = "row"
eps = 1e-8
'''


def _edited(source: str, edits) -> str:
    """``source`` with each (old, new) pair of ``edits`` replaced, each old text found exactly once."""
    for old, new in edits:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    return source


def _mytorch(tmp_path, spec: str = MYTORCH_SPEC, source: str | None = None, **kwargs):
    (tmp_path / "spec.toml").write_text(spec)
    path = tmp_path / "layers.py"
    path.write_text(source if source is not None else (STUDENTS / "mytorch" / "layers.py").read_text())
    return grade([path], resolve_convention(None, tmp_path / "spec.toml"), **kwargs)


def test_a_course_whose_layers_keep_weights_as_attributes_is_graded_from_a_spec_that_names_them(tmp_path):
    report = _mytorch(tmp_path, configs=10)
    rows = _rows(report)
    assert report.ok, [r.first_failure for r in report.rows]
    assert all(r.total >= 3 for r in report.rows)
    # the stride-1 pool takes a kernel size only: the configurations with another stride are counted, not run
    assert rows["maxpool"].skipped > 0 and rows["conv"].skipped == 0 and rows["linear"].skipped == 0
    # without the attribute names the same files cannot be graded: the tables are what made them pass
    plain = MYTORCH_SPEC.replace('params = {weight = "W", bias = "b"}\ngrads = {weight = "dLdW", bias = "dLdb"}\n', "")
    assert "has no params dict" in _rows(_mytorch(tmp_path, plain, configs=1))["linear"].first_failure
    # ... and ReLU.backward() without derivative = true is called with dout, which it does not take
    relu = _rows(_mytorch(tmp_path, MYTORCH_SPEC.replace("derivative = true\n", ""), configs=1))["relu"]
    assert relu.passed == 0 and "TypeError" in relu.first_failure


@pytest.mark.parametrize("update, name", [("self.W -= 0.1 * self.dLdW", "weight"),
                                          ("self.b = self.b - 0.1 * self.dLdb", "bias")])
def test_a_module_backward_that_updates_its_own_parameters_fails_naming_it(tmp_path, update, name):
    """A backward whose gradients are right but which then steps the parameters itself (a CS7643 student's
    convolution ended ``self.weight -= dw``): a course's optimiser would update them twice. Told, in place or
    rebound, where only the gradients were compared before."""
    source = _edited((STUDENTS / "mytorch" / "layers.py").read_text(),
                     [("        self.dLdb = dLdZ.T @ self.ones\n        return dLdZ @ self.W\n",
                       f"        self.dLdb = dLdZ.T @ self.ones\n        dx = dLdZ @ self.W\n        {update}\n"
                       "        return dx\n")])
    row = _rows(_mytorch(tmp_path, source=source, only=["linear"], configs=3))["linear"]
    assert row.total > 0 and row.passed == 0, row.failures
    assert f"Linear's {name} changed during forward and backward" in row.first_failure
    assert "the optimiser's step updates them" in row.first_failure


def test_a_batch_norm_with_its_own_names_layout_eps_and_evaluation_keyword_is_graded(tmp_path):
    """CMU's BatchNorm1d: (1, D) attributes BW, Bb, running_M, running_V, eps 1e-8 (the grader's 1e-5 would be
    1e-6 off), forward(Z, eval=True): right as written; each setting left out, or a real bug, fails it."""
    source = (STUDENTS / "mytorch" / "layers.py").read_text()
    row = _rows(_mytorch(tmp_path, only=["batchnorm"], configs=4))["batchnorm"]
    assert row.total >= 4 and row.passed == row.total, row.failures
    for setting, named in (('layout = "row"\n', "BatchNorm1d.BW has shape (1, 3), the convention's is (3,)"),
                           ("eps = 1e-8\n", "relative error"),  # out 2e-6 off; dx, told first, 2e-2
                           ('eval_keyword = "eval"\n', "has no eval() method for evaluation mode"),
                           ('running = {mean = "running_M", var = "running_V"}\n',
                            "has no attribute running_mean or running_var (its running statistics")):
        row = _rows(_mytorch(tmp_path, MYTORCH_SPEC.replace(setting, ""), only=["batchnorm"], configs=1))["batchnorm"]
        assert row.passed == 0 and named in row.first_failure, (setting, row.first_failure)
    unbiased = "self.V = ((Z - self.M) ** 2).mean(axis=0, keepdims=True)"
    assert unbiased in source
    bug = source.replace(unbiased, "self.V = Z.var(axis=0, ddof=1, keepdims=True)")
    row = _rows(_mytorch(tmp_path, source=bug, only=["batchnorm"], configs=1))["batchnorm"]
    assert row.passed == 0 and "updated with the unbiased batch variance" in row.first_failure
    # gamma's gradient flat, (D,), as students' sum(axis=0) gives it, updates the (1, D) parameter alike: it passes;
    # one in another shape is named by the course's attribute
    kept = "self.dLdBW = (dLdBZ * self.NZ).sum(axis=0, keepdims=True)"
    for shape, ok in (("(dLdBZ * self.NZ).sum(axis=0)", True), ("(dLdBZ * self.NZ).sum(axis=0, keepdims=True).T",
                                                                False)):
        changed = source.replace(kept, f"self.dLdBW = {shape}")
        row = _rows(_mytorch(tmp_path, source=changed, only=["batchnorm"], configs=3))["batchnorm"]
        if ok:
            assert row.total >= 3 and row.passed == row.total, row.failures
        else:
            assert row.passed < row.total and "dgamma (dLdBW) has shape (3, 1), expected (1, 3)" in \
                row.first_failure, row.failures  # (a feature of one: (1, 1) either way)


def test_a_gradient_off_by_the_batch_size_is_told_its_factor(tmp_path):
    source = (STUDENTS / "mytorch" / "layers.py").read_text()
    old = "self.dLdW = dLdZ.T @ self.A\n"
    assert old in source
    report = _mytorch(tmp_path, source=source.replace(old, "self.dLdW = dLdZ.T @ self.A / len(self.A)\n"),
                      only=["linear"], configs=2)
    row = report.rows[0]
    # batches of one are right; the first batch of 4 is a quarter of torch's gradient, and says so
    assert 0 < row.passed < row.total
    assert "n=4" in row.first_failure and "dw (dLdW): relative error" in row.first_failure
    assert "exactly 1/4 times the expected value" in row.first_failure
    # CMU's 2022 handout averaged there (its loss's backward did not): right under grad = "mean", whose dLdb must
    # then be averaged too
    spec = MYTORCH_SPEC.replace('bias = "column"\n', 'bias = "column"\ngrad = "mean"\n')
    source = source.replace(old, "self.dLdW = dLdZ.T @ self.A / len(self.A)\n")
    assert _rows(_mytorch(tmp_path, spec, source=source, only=["linear"], configs=2))["linear"].passed == 1  # n = 1
    source = source.replace("self.dLdb = dLdZ.T @ self.ones\n", "self.dLdb = dLdZ.T @ self.ones / len(self.A)\n")
    assert _mytorch(tmp_path, spec, source=source, only=["linear"], configs=2).ok


def test_a_class_that_takes_none_of_the_drawn_arguments_fails_saying_why(tmp_path, monkeypatch):
    import dataclasses

    from twinnet.grader.kinds import KINDS

    spec = MYTORCH_SPEC.replace('class = "Conv2d"\n', 'class = "Conv2d_stride1"\nargs = ["in_channels", '
                                '"out_channels", "kernel_size"]\n').replace("conv2d_stride1.", "")
    rows = _rows(_mytorch(tmp_path, spec, only=["conv"], configs=40))
    assert rows["conv"].total and rows["conv"].passed == rows["conv"].total  # stride 1, padding 0 only
    assert rows["conv"].skipped > rows["conv"].total
    # only pools of stride 2: none applies to the stride-1 class, so the row fails and says what to do
    strided = lambda rng, k: [dict(n=1, c=1, h=4, w=4, ph=2, pw=2, s=2)] * 3  # noqa: E731
    monkeypatch.setitem(KINDS, "maxpool", dataclasses.replace(KINDS["maxpool"], configs=strided))
    report = _mytorch(tmp_path, only=["maxpool"])
    row = report.rows[0]
    assert not report.ok and (row.total, row.skipped) == (0, 3)
    assert "none of its 3 configurations applies to the convention's MaxPool2d_stride1" in row.first_failure


def test_after_a_timeout_the_configurations_left_are_still_sorted_into_not_run_and_not_applicable(tmp_path,
                                                                                                    monkeypatch):
    import dataclasses

    from twinnet.grader import loader
    from twinnet.grader.kinds import KINDS

    monkeypatch.setattr(loader, "CALL_LIMIT_S", 0.5)
    # the stride-1 pool's forward never ends: the stride-2 configurations after it stay n/a, the others fail unrun
    stride = [1, 2, 1, 2, 2]
    drawn = lambda rng, k: [dict(n=1, c=1, h=4, w=4, ph=2, pw=2, s=s) for s in stride]  # noqa: E731
    monkeypatch.setitem(KINDS, "maxpool", dataclasses.replace(KINDS["maxpool"], configs=drawn))
    source = (STUDENTS / "mytorch" / "layers.py").read_text().replace(
        "    def forward(self, A):\n        self.A = A\n        n, c, h, w = A.shape\n        out = np.empty((n, c, h - "
        "self.k", "    def forward(self, A):\n        while True:\n            pass\n        out = np.empty((n, c, h - self.k")
    row = _mytorch(tmp_path, source=source, only=["maxpool"]).rows[0]
    assert (row.passed, row.total, row.skipped) == (0, 2, 3)
    assert "ran for more than 0.5 s" in row.failures[0] and "not run, as #0 ran past the time limit" in row.failures[1]


EECS498 = [STUDENTS / "eecs498" / f for f in ("fully_connected_networks.py", "convolutional_networks.py",
                                               "a3_helper.py")]


def test_a_course_of_torch_tensors_is_graded_and_its_bugs_are_found(tmp_path, capsys):
    """EECS 498's layers take and return torch tensors (batch norm writes tensors into bn_param, the
    optimisers into config): graded as CS231n's are; a bug in them is found; as NumPy arrays they cannot run."""
    report = grade(EECS498, resolve_convention("eecs498", None), configs=3)
    rows = _rows(report)
    assert report.ok and all(rows[k].total and rows[k].passed == rows[k].total for k in
                             ("linear", "relu", "dropout", "conv", "maxpool", "batchnorm", "adam", "sgd_momentum"))
    assert not rows["spatial_batchnorm"].submitted  # no SpatialBatchNorm in the files: an optional layer
    assert rows["batchnorm_alt"].submitted and rows["batchnorm_alt"].passed == rows["batchnorm_alt"].total > 0
    # the whole network, its params torch tensors (made in torch.float64) and its loss's results too
    assert rows["mlp"].passed == rows["mlp"].total == 3 and not rows["convnet"].submitted
    # a wrong weight gradient in torch code is found, and the factor named
    for f in EECS498:
        (tmp_path / f.name).write_text(f.read_text())
    fc = tmp_path / "fully_connected_networks.py"
    fc.write_text(fc.read_text().replace("dw = x.reshape(x.shape[0], -1).t().mm(dout)",
                                         "dw = 2 * x.reshape(x.shape[0], -1).t().mm(dout)"))
    files = [tmp_path / f.name for f in EECS498]
    linear = _rows(grade(files, resolve_convention("eecs498", None), only=["linear"], configs=2))["linear"]
    assert linear.passed == 0 and "dw" in linear.first_failure and "exactly 2 times" in linear.first_failure
    mlp = _rows(grade(files, resolve_convention("eecs498", None), only=["mlp"], configs=3))["mlp"]  # it reaches the
    assert mlp.passed == 0 < mlp.total and "grads['W" in mlp.first_failure, mlp.first_failure  # network's gradients
    # BatchNorm.backward_alt, CS231n's batchnorm_backward_alt as a method: its own bug fails its row alone
    conv = tmp_path / "convolutional_networks.py"
    alt = "        dx = gamma * (n * dout - dbeta - x_hat * dgamma) / (n * std)\n"
    assert conv.read_text().count(alt) == 1
    conv.write_text(conv.read_text().replace(alt, alt.replace("/ (n * std)", "/ std")))
    norm = _rows(grade(files, resolve_convention("eecs498", None), only=["batchnorm", "batchnorm_alt"], configs=2))
    assert norm["batchnorm"].passed == norm["batchnorm"].total > 0
    assert norm["batchnorm_alt"].passed == 0 and "dx" in norm["batchnorm_alt"].first_failure
    # the same spec with NumPy arrays: the tensors' methods are missing, so nothing passes
    (tmp_path / "numpy.toml").write_text('style = "functional"\n[layers.linear]\nforward = "Linear.forward"\n'
                                         'backward = "Linear.backward"\n')
    as_numpy = _rows(grade(EECS498, resolve_convention(None, tmp_path / "numpy.toml"), configs=1))["linear"]
    assert as_numpy.passed == 0 and "AttributeError" in as_numpy.first_failure
    # through the CLI, the built-in convention by name
    assert main(["check", *map(str, EECS498), "--convention", "eecs498", "--only", "relu,maxpool", "--configs", "2"]) == 0
    out = capsys.readouterr().out
    assert "(eecs498 convention, seed 0" in out and re.search(r"\| ReLU \| (\d+)/\1 \|", out)


def test_a_torch_course_gets_its_caches_back_as_they_came(tmp_path):
    """A cache holding a tensor with its autograd history (a backward through torch's own autograd), a cache
    that refers to itself, and a named tuple returned: each reaches the student, or the grader, intact."""
    (tmp_path / "layers.py").write_text(
        "import collections, torch\n"
        "Pair = collections.namedtuple('Pair', 'out cache')\n"
        "class ReLU:\n"
        "    @staticmethod\n"
        "    def forward(x):\n"
        "        x = x.detach().clone().requires_grad_()\n        out = x.clamp(min=0)\n"
        "        return Pair(out, (x, out))\n"
        "    @staticmethod\n"
        "    def backward(dout, cache):\n        x, out = cache\n        out.backward(dout)\n        return x.grad\n"
        "class Linear:\n"
        "    @staticmethod\n"
        "    def forward(x, w, b):\n        cache = {'x': x, 'w': w}\n        cache['me'] = cache\n"
        "        return x.reshape(x.shape[0], -1) @ w + b, cache\n"
        "    @staticmethod\n"
        "    def backward(dout, cache):\n        x, w = cache['me']['x'], cache['w']\n"
        "        return (dout @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ dout, dout.sum(0)\n")
    rows = _rows(grade([tmp_path / "layers.py"], resolve_convention("eecs498", None), only=["relu", "linear"],
                       configs=2))
    assert all(r.total and r.passed == r.total for r in rows.values()), [r.first_failure for r in rows.values()]


def test_a_functional_course_with_a_row_bias_and_static_methods_is_graded(tmp_path):
    (tmp_path / "mine.py").write_text(
        "import numpy as np\n"
        "class Linear:\n"
        "    @staticmethod\n"
        "    def forward(x, w, b):\n        assert b.shape == (1, w.shape[1])\n"
        "        return x.reshape(len(x), -1) @ w + b, (x, w)\n"
        "    @staticmethod\n"
        "    def backward(dout, cache):\n        x, w = cache\n"
        "        return (dout @ w.T).reshape(x.shape), x.reshape(len(x), -1).T @ dout, dout.sum(0, keepdims=True)\n")
    spec = tmp_path / "course.toml"
    spec.write_text('style = "functional"\n[layers.linear]\nforward = "Linear.forward"\nbackward = "Linear.backward"\n'
                    'bias = "row"\n')
    report = grade([tmp_path / "mine.py"], resolve_convention(None, spec), configs=2)
    assert report.ok, report.rows[0].first_failure
    spec.write_text(spec.read_text().replace('"row"', '"flat"'))  # the grader passes (M,): the student's assert fails
    assert "AssertionError" in grade([tmp_path / "mine.py"], resolve_convention(None, spec), configs=2).rows[0].first_failure


@pytest.mark.parametrize("text, message", [
    ('style = "module"\n[layers.softmax_cross_entropy]\nloss = "L"\nbackward = "nothin"\n',
     'backward must be "inputs"'),
    ('style = "module"\n[layers.mlp]\nclass = "M"\nlinear = "L"\nfused = "yes"\n', "fused must be true or false"),
    ('style = "module"\n[layers.linear]\nclass = "L"\nparams = {weight = "W", bias = "b"}\n',
     "it has only params"),
    ('style = "module"\n[layers.linear]\nclass = "L"\nparams = {W = "W", bias = "b"}\ngrads = {weight = "dW", bias = '
     '"db"}\n', "params must be a table naming the attribute of each of weight, bias"),
    ('style = "module"\n[layers.conv]\nclass = "C"\nargs = ["in_channels", "kernel_size"]\n',
     "args must list the class's arguments in its order"),
    ('style = "module"\n[layers.maxpool]\nclass = "P"\nargs = ["kernel", "stride"]\n', "it may leave out stride (then 1)"),
    ('style = "functional"\n[layers.linear]\nforward = "f"\nbackward = "b"\nbias = "any"\n', 'bias = "any" is for module'),
    ('style = "functional"\n[layers.linear]\nforward = "f"\nbackward = "b"\nweight = "any"\n',
     'weight = "any" is for module'),
    ('style = "module"\n[layers.linear]\nclass = "L"\nweight = "in"\n', "weight must be one of in_out, out_in, any"),
    ('style = "functional"\n[layers.relu]\nforward = "f"\nbackward = "b"\nderivative = true\n', "unknown key(s) derivative"),
    ('style = "module"\n[layers.relu]\nforward = "f"\nbackward = "b"\n',
     "unknown key(s) forward, backward; in the module style it takes class, derivative, optional, graded, dx (forward, "
     "backward belong to the functional style"),
    ('style = "module"\n[layers.relu]\nclas = "ReLU"\n', "unknown key(s) clas"),
    ('style = "functional"\n[layers.linear]\nforward = "f"\nbackward = "b"\nparams = {weight = "W", bias = "b"}\n',
     "params belongs to the module style"),
    ('style = "module"\n[layers.linear]\nclass = "Lin..ear"\n', "class = 'Lin..ear' is not a Python name"),
    ('style = "module"\n[layers.linear]\nclass = "L"\nparams = {weight = " W", bias = "b"}\ngrads = {weight = "dW", '
     'bias = "db"}\n', "params must be a table"),
    ('style = "module"\n[layers.batchnorm]\nclass = "B"\nrunning = {mean = "M"}\n', "running must be a table naming"),
    ('style = "module"\n[layers.batchnorm]\nclass = "B"\neval_keyword = "eval()"\n', "eval_keyword must be the name"),
    ('style = "module"\n[layers.batchnorm]\nclass = "B"\nlayout = "column"\n', "layout must be one of flat, row"),
    ('style = "module"\n[layers.batchnorm]\nclass = "B"\neps = "1e-8"\n', "eps must be the number"),
    ('style = "functional"\n[layers.batchnorm]\nforward = "f"\nbackward = "b"\nlayout = "row"\n',
     "layout belongs to the module style"),
    ('name = 1979-05-27\nstyle = "module"\n[layers.relu]\nclass = "R"\n', "name must be a string"),
    ('name = " "\nstyle = "module"\n[layers.relu]\nclass = "R"\n', "name must be a string that is not blank"),
])
def test_a_spec_for_a_course_of_plain_attributes_or_fewer_arguments_is_checked_before_grading(text, message, tmp_path):
    from twinnet.grader.conventions import load_spec

    (tmp_path / "spec.toml").write_text(text)
    with pytest.raises(TwinnetError, match=re.escape(message)):
        load_spec(tmp_path / "spec.toml")


def test_a_constant_factor_is_named_only_where_the_values_prove_it():
    from twinnet.grader.compare import scale_hint

    ref = np.array([[1.0, -2.0], [0.5, 3.0]])
    assert "exactly 4 times" in scale_hint(ref * 4, [ref])
    assert "exactly 1/8 times" in scale_hint(ref / 8, [ref])
    assert "sign flipped" in scale_hint(-ref, [ref])
    assert "exactly 2.5 times" in scale_hint(ref * 2.5, [ref])
    assert scale_hint(ref + 1, [ref]) == ""  # not a multiple
    assert scale_hint(ref, [ref]) == ""  # right
    # one number is a multiple of any other: only a whole factor to nine digits is named (a loss summed over the
    # batch where its mean belongs), not another, nor a flipped sign
    assert scale_hint(np.array([3.7]), [np.array([1.5])]) == "" and scale_hint(-1.5, [1.5]) == ""
    assert "exactly 3 times" in scale_hint(4.5, [1.5]) and "exactly 1/2 times" in scale_hint(0.75, [np.array(1.5)])
    assert "exactly 2 times" in scale_hint(2.91789867481666, [1.4589493374083302])  # 2 less a rounding: still 2
    for tiny in ((1e-310, [2.0]), (3.0, [1e-170]), (np.array([0, 1.0]), [np.array([0, 1e-170])])):
        assert scale_hint(*tiny) == ""  # a factor that overflows: nothing said, nothing raised
    assert scale_hint(None, [ref]) == "" and scale_hint(ref[0], [ref]) == ""
    assert scale_hint(ref * 1.000002, [ref]) == ""  # within rounding of right: no factor to name
    assert "exactly 2.0000001 times" in scale_hint(ref * 2.0000001, [ref])  # not rounded to a whole number
    assert scale_hint(ref * 1e300, [ref * 1e-300]) == ""  # overflow: nothing said, nothing raised


def test_weights_behind_properties_and_a_loss_whose_backward_takes_nothing_are_graded(tmp_path):
    """A weight property that hands out a copy (with a setter) is set through the setter; a property that raises
    fails the row naming the student's line; a loss of probabilities whose backward() takes no arguments passes
    under backward = "nothing"."""
    source = (STUDENTS / "mytorch" / "layers.py").read_text() + (
        "\n\nclass Prop(Linear):\n"
        "    @property\n    def W(self):\n        return self._w.copy()\n"
        "    @W.setter\n    def W(self, value):\n        self._w = np.array(value, dtype=float)\n"
        "\n\nclass Broken(Linear):\n"
        "    @property\n    def b(self):\n        raise ValueError('no bias today')\n"
        "    @b.setter\n    def b(self, value):\n        pass\n"
        "\n\nclass Softmax:\n    def forward(self, z):\n"
        "        e = np.exp(z - z.max(axis=1, keepdims=True))\n        self.p = e / e.sum(axis=1, keepdims=True)\n"
        "        return self.p\n"
        "    def backward(self, dp):\n        s = (dp * self.p).sum(axis=1, keepdims=True)\n        return self.p * (dp - s)\n"
        "\n\nclass NLL:\n    def forward(self, p, y):\n        self.p, self.y = p, y\n"
        "        return -np.log(p[np.arange(len(y)), y]).mean()\n"
        "    def backward(self):\n        d = np.zeros_like(self.p)\n"
        "        d[np.arange(len(self.y)), self.y] = -1 / (self.p[np.arange(len(self.y)), self.y] * len(self.y))\n"
        "        return d\n")
    linear = '[layers.linear]\nclass = "{}"\nweight = "out_in"\nbias = "column"\nparams = {{weight = "W", bias = "b"}}\n' \
             'grads = {{weight = "dLdW", bias = "dLdb"}}\n'
    spec = 'style = "module"\n' + linear.format("Prop")
    assert _mytorch(tmp_path, spec, source=source, configs=2).ok
    row = _mytorch(tmp_path, 'style = "module"\n' + linear.format("Broken"), source=source, configs=1).rows[0]
    assert row.passed == 0 and "ValueError: no bias today" in row.first_failure and "layers.py:" in row.first_failure
    loss = ('style = "module"\n[layers.softmax_cross_entropy]\nsoftmax = "Softmax"\nloss = "NLL"\n'
            'input = "probabilities"\ntarget = "labels"\n')
    report = _mytorch(tmp_path, loss + 'backward = "nothing"\n', source=source, configs=2)
    assert report.ok, report.rows[0].first_failure
    assert "TypeError" in _mytorch(tmp_path, loss, source=source, configs=1).rows[0].first_failure


def test_a_loss_that_returns_the_mean_and_the_sums_gradient_passes_under_grad_sum(tmp_path):
    """CMU 11-785's 2022 loss: forward the mean cross-entropy, backward softmax - Y (the sum's gradient, its
    Linear layer dividing by N); ``grad = "sum"`` grades it so, and a loss whose gradient is the mean's fails."""
    source = ("import numpy as np\n\nclass CE:\n    def forward(self, a, y):\n"
              "        z = a - a.max(axis=1, keepdims=True)\n        self.s = np.exp(z) / np.exp(z).sum(axis=1, "
              "keepdims=True)\n        self.y = y\n        return -(y * (z - np.log(np.exp(z).sum(axis=1, "
              "keepdims=True)))).sum() / len(y)\n    def backward(self):\n        return self.s - self.y{}\n")
    loss = ('style = "module"\nparams = "attributes"\n[layers.softmax_cross_entropy]\nloss = "CE"\n'
            'target = "one_hot"\n')
    summed = _mytorch(tmp_path, loss + 'grad = "sum"\n', source=source.format(""), configs=3).rows[0]
    assert summed.passed == summed.total > 0, summed.failures
    plain = _mytorch(tmp_path, loss, source=source.format(""), configs=3).rows[0]
    assert plain.passed < plain.total
    assert "dx is the gradient of the losses' sum" in plain.first_failure and 'grad = "sum"' in plain.first_failure
    mean = _mytorch(tmp_path, loss + 'grad = "sum"\n', source=source.format(" / len(self.y)"), configs=3).rows[0]
    assert mean.passed < mean.total
    for edit, told in ((("return -(y", "return None and -(y"), "loss is None"),
                       (("return self.s - self.y", "return None"), "dx is None"),
                       (("return -(y", "return torch.tensor(1.0, requires_grad=True) + -(y"), "loss is a Tensor")):
        odd = "import torch\n" + source.format("").replace(*edit)  # told as they are, not as an overflow
        row = _mytorch(tmp_path, loss + 'grad = "sum"\n', source=odd, configs=3).rows[0]
        assert row.passed == 0 and all(told in f and "overflow" not in f for f in row.failures), row.failures
    unshifted = source.format("").replace("z = a - a.max(axis=1, keepdims=True)", "z = a")  # exp(1000) is inf
    row = _mytorch(tmp_path, loss + 'grad = "sum"\n', source=unshifted, configs=3).rows[0]
    assert row.passed == row.total - 1 and "scale=1000" in row.first_failure
    assert "exp overflows" in row.first_failure and "subtract each row's largest score" in row.first_failure


def test_a_loss_whose_stable_softmax_meets_the_log_of_an_underflowed_zero_is_told_so_not_to_shift(tmp_path):
    """A module loss of logits whose softmax is shifted (dx right) but whose loss is -Y * log(softmax): at logits
    of size 1000 a probability is exactly 0, its log -inf, and a one-hot target's 0 times it nan (CMU 11-785's
    2024 handout, a student's file). Told as the log of an underflowed probability, with the log-softmax to
    compute; not as an exp that overflows, which the student already prevents."""
    source = ("import numpy as np\n\nclass CE:\n    def forward(self, a, y):\n"
              "        z = np.exp(a - a.max(axis=1, keepdims=True))\n        self.s = z / z.sum(axis=1, keepdims=True)\n"
              "        self.y = y\n        return (-y * np.log(self.s)).sum() / len(y)\n"
              "    def backward(self):\n        return (self.s - self.y) / len(self.y)\n")
    loss = 'style = "module"\nparams = "attributes"\n[layers.softmax_cross_entropy]\nloss = "CE"\ntarget = "one_hot"\n'
    with np.errstate(all="ignore"):
        row = _mytorch(tmp_path, loss, source=source, configs=3).rows[0]
    assert row.passed == row.total - 1 and "scale=1000" in row.first_failure, row.failures
    assert "loss is nan" in row.first_failure and "though dx is right" in row.first_failure
    assert "0 * log(0) is nan" in row.first_failure and "shifted - log(sum(exp(shifted)))" in row.first_failure
    assert "subtract each row's largest score" not in row.first_failure
    # the unshifted softmax, whose dx is nan too, is still told to shift
    with np.errstate(all="ignore"):
        row = _mytorch(tmp_path, loss, source=source.replace("a - a.max(axis=1, keepdims=True)", "a"),
                       configs=3).rows[0]
    assert "subtract each row's largest score" in row.first_failure and "though dx is right" not in row.first_failure


DLAI_SPEC = '''name = "dlai"
style = "functional"
[layers.linear]
forward = "linear_forward"
backward = "linear_backward"
weight = "out_in"
bias = "column"
batch = "columns"
grad = "mean"
[layers.relu]
forward = "relu"
backward = "relu_backward"
'''


def test_a_course_with_samples_as_columns_and_averaged_weight_gradients_is_graded_from_a_spec(tmp_path):
    spec = tmp_path / "dlai.toml"
    files = [STUDENTS / "dlai" / "dnn_layers.py"]
    spec.write_text(DLAI_SPEC)
    report = grade(files, resolve_convention(None, spec), configs=4)
    assert report.ok, [r.first_failure for r in report.rows]
    # the same files given samples as rows: W @ A cannot even multiply them
    spec.write_text(DLAI_SPEC.replace('batch = "columns"\n', ""))
    row = _rows(grade(files, resolve_convention(None, spec), only=["linear"], configs=1))["linear"]
    assert row.passed == 0 and "linear_forward raised ValueError" in row.first_failure
    # ... and with summed gradients, the averaged ones are told their factor (1/4 for the batch of 4)
    spec.write_text(DLAI_SPEC.replace('grad = "mean"\n', ""))
    row = _rows(grade(files, resolve_convention(None, spec), only=["linear"], configs=1))["linear"]
    assert "n=4" in row.first_failure and "exactly 1/4 times the expected value" in row.first_failure


def test_a_file_that_never_finishes_loading_is_named_with_what_to_do(tmp_path, monkeypatch):
    from twinnet.grader import loader

    monkeypatch.setattr(loader, "LOAD_LIMIT_S", 0.5)  # the limit itself, lowered: machine speed cannot move it
    monkeypatch.setattr(loader, "HARD_STOP", None)
    path = tmp_path / "layers.py"
    path.write_text("import numpy as np\n\nwhile True:\n    pass\n")
    with pytest.raises(TwinnetError) as caught:
        loader.load([path])
    message = str(caught.value)
    assert message.startswith("layers.py cannot be loaded: took more than 0.5 s to load")
    assert "belongs under `if __name__ == \"__main__\":`" in message


def test_a_forward_whose_output_cannot_be_compared_is_named_before_a_backward_that_fails_on_its_cache(tmp_path,
                                                                                                   capsys):
    """Text, a ragged list or None as a forward's output, beside a cache the backward then fails on: the row names
    the output, not the backward's error that followed from it."""
    (tmp_path / "layers.py").write_text(
        "import numpy as np\n"
        "def affine_forward(x, w, b):\n    return 'garbage', None\n"
        "def affine_backward(dout, cache):\n    x, w, b = cache\n    return x, w, b\n"
        "def relu_forward(x):\n    return [[1, 2], [3]], None\n"
        "def relu_backward(dout, cache):\n    return dout * (cache > 0)\n"
        "def max_pool_forward_naive(x, p):\n    return None, None\n"
        "def max_pool_backward_naive(dout, cache):\n    return dout * cache['mask']\n")
    code = main(["check", str(tmp_path / "layers.py"), "--convention", "cs231n", "--only", "linear,relu,maxpool",
                 "--configs", "1"])
    out = capsys.readouterr().out
    assert code == 1 and "raised" not in out
    assert re.search(r"\| linear \(affine\) \| 0/\d+ \| n/a \| linear #0 [^|]*: out is of dtype <U7, not a float "
                     r"array \|", out)
    assert re.search(r"\| ReLU \| 0/\d+ \| n/a \| relu #0 [^|]*: out is a list, not an array \|", out)
    assert re.search(r"\| max pooling \| 0/\d+ \| n/a \| maxpool #0 [^|]*: out is None \(nothing returned, or a "
                     r"starter's placeholder left unfilled\) \|", out)


def test_a_functional_affine_with_a_row_bias_may_return_its_gradient_flat(tmp_path):
    """CS231n's affine_backward returns db = sum(dout, axis=0), (M,): under a spec whose bias is a row, (1, M),
    that updates the bias alike, as in the module style."""
    spec = tmp_path / "course.toml"
    spec.write_text('style = "functional"\n[layers.linear]\nforward = "affine_forward"\nbackward = "affine_backward"\n'
                    'weight = "in_out"\nbias = "row"\n')
    [row] = grade([CS231N[0]], resolve_convention(None, spec), configs=3).rows
    assert row.passed == row.total > 0, row.failures


def test_a_nan_loss_after_a_softmax_that_overflowed_is_blamed_on_the_softmax_and_a_loss_of_none_says_none(tmp_path):
    source = (STUDENTS / "uva" / "modules.py").read_text()
    unstable = source.replace("b = x.max(axis=1, keepdims=True)", "b = 0")
    assert unstable != source
    (tmp_path / "modules.py").write_text(unstable)
    [row] = grade([tmp_path / "modules.py"], resolve_convention("uva", None), only=["softmax_cross_entropy"]).rows
    huge = next(f for f in row.failures if "scale=1000.0" in f)
    assert "probabilities" in huge and "log(0)" not in huge, huge
    (tmp_path / "modules.py").write_text(source.replace("        out = -np.mean(np.log(x[np.arange(N), y]))\n"
                                                        "        return out", "        return None"))
    [row] = grade([tmp_path / "modules.py"], resolve_convention("uva", None), only=["softmax_cross_entropy"]).rows
    assert row.passed == 0 and all("nan" not in f for f in row.failures), row.failures


def _uva_copy(tmp_path: Path, modules=lambda s: s, mlp=lambda s: s) -> list[Path]:
    """The reference UvA submission, its two files changed by ``modules`` and ``mlp``."""
    out = []
    for name, change in (("modules.py", modules), ("mlp_numpy.py", mlp)):
        (tmp_path / name).write_text(change((STUDENTS / "uva" / name).read_text()))
        out.append(tmp_path / name)
    return out


ONE_HOT_FROM_LABELS = ("    def forward(self, x, y):\n"
                       "        t = np.eye(np.max(y) + 1)[y]\n"
                       "        return -np.sum(t * np.log(x)) / x.shape[0]\n\n"
                       "    def backward(self, x, y):\n"
                       "        t = np.eye(np.max(y) + 1)[y]\n"
                       "        return -t / x / x.shape[0]\n")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_one_hot_width_read_from_the_labels_fails_and_is_named_at_every_seed(tmp_path, seed):
    """A student's one-hot of width y.max() + 1 is right whenever the batch holds the last class: a batch whose
    labels leave it out fails at every seed, and the message names the cause (it passed at seed 0 before)."""
    old = ("    def forward(self, x, y):\n        N = x.shape[0]\n        out = -np.mean(np.log(x[np.arange(N), y]))\n"
           "        return out\n\n    def backward(self, x, y):\n        N = x.shape[0]\n"
           "        dx = np.zeros_like(x)\n        dx[np.arange(N), y] = -1.0 / (N * x[np.arange(N), y])\n"
           "        return dx\n")
    files = _uva_copy(tmp_path, modules=lambda s: s.replace(old, ONE_HOT_FROM_LABELS))
    assert ONE_HOT_FROM_LABELS in files[0].read_text()
    row = grade(files, resolve_convention("uva", None), only=["softmax_cross_entropy"], seed=seed).rows[0]
    assert row.passed < row.total
    assert any("last_class_absent=True" in f and "taken from the labels (y.max() + 1)" in f for f in row.failures), \
        row.failures
    # the functional loss too (CS231n's softmax_loss)
    layers = (STUDENTS / "cs231n" / "layers.py").read_text().replace(
        "    dx = probs.copy()\n    dx[np.arange(N), y] -= 1\n",
        "    dx = probs - np.eye(y.max() + 1)[y]\n")
    (tmp_path / "layers.py").write_text(layers)
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["softmax_loss"], seed=seed).rows[0]
    assert any("taken from the labels" in f for f in row.failures), row.failures


@pytest.mark.parametrize("seed", [1, 2])
def test_a_loss_wrong_for_another_reason_is_not_blamed_on_the_labels(tmp_path, seed):
    """An SVM loss whose class loop stops before the last class: right for a sample whose true class is the last,
    so moving one label there can pass (at these seeds), but not moving each in turn; the labels are not blamed."""
    (tmp_path / "layers.py").write_text(
        "import numpy as np\n\n\ndef svm_loss(x, y):\n    N, C = x.shape\n    loss, dx = 0.0, np.zeros_like(x)\n"
        "    for i in range(N):\n        for j in range(C - 1):\n            if j == y[i]:\n                continue\n"
        "            m = x[i, j] - x[i, y[i]] + 1\n            if m > 0:\n                loss += m\n"
        "                dx[i, j] += 1\n                dx[i, y[i]] -= 1\n    return loss / N, dx / N\n")
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["svm_loss"], seed=seed).rows[0]
    assert row.passed < row.total and any("last_class_absent=True" in f for f in row.failures), row.failures
    assert not any("taken from the labels" in f for f in row.failures), row.failures


def test_a_softmax_shifted_by_the_whole_batchs_maximum_is_named(tmp_path):
    """The max trick with the batch's maximum, not each row's: rows far below it are 0 / 0 on large logits."""
    files = _uva_copy(tmp_path, modules=lambda s: s.replace("b = x.max(axis=1, keepdims=True)", "b = x.max()"))
    row = grade(files, resolve_convention("uva", None), only=["softmax_cross_entropy"]).rows[0]
    assert any("scale=1000.0" in f and "subtracts the whole batch's largest score" in f for f in row.failures), \
        row.failures
    layers = (STUDENTS / "cs231n" / "layers.py").read_text().replace(
        "shifted = x - np.max(x, axis=1, keepdims=True)", "shifted = x - np.max(x)")
    (tmp_path / "layers.py").write_text(layers)
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["softmax_loss"]).rows[0]
    assert any("subtracts the whole batch's largest score" in f for f in row.failures), row.failures


def test_an_mlp_without_activations_is_named_and_one_without_hidden_layers_is_graded(tmp_path):
    files = _uva_copy(tmp_path, mlp=lambda s: s.replace("            self.layers.append(ReLUModule())\n", ""))
    row = grade(files, resolve_convention("uva", None), only=["mlp"]).rows[0]
    assert any("LinearModule layers alone, nothing between them acting: no ReLU" in f for f in row.failures), \
        row.failures
    assert row.passed == 1  # only the MLP with no hidden layer, where there is nothing to put between
    # an MLP that cannot be built without a hidden layer, as its docstring asks of an empty n_hidden: that one fails
    first_only = ("    def __init__(self, n_inputs, n_hidden, n_classes):\n"
                  "        self.first = n_hidden[0]\n")
    files = _uva_copy(tmp_path, mlp=lambda s: s.replace(
        "    def __init__(self, n_inputs, n_hidden, n_classes):\n", first_only))
    row = grade(files, resolve_convention("uva", None), only=["mlp"]).rows[0]
    assert (row.passed, row.total) == (3, 4) and "hidden=[]" in row.first_failure and "IndexError" in row.first_failure


def test_only_the_mlp_is_graded_with_its_linear_layers_convention(tmp_path, capsys):
    """`--only mlp` (a child process given the layers to grade) still reads the linear layer's entry of the
    convention: the UvA reference's (1, out) bias, allowed there, passed the whole run but failed alone."""
    assert "'bias': np.zeros((1, out_features))" in (STUDENTS / "uva" / "modules.py").read_text()
    assert main(["check", *map(str, UVA), "--convention", "uva", "--only", "mlp"]) == 0
    assert "| whole MLP, a few SGD steps | 4/4 |" in capsys.readouterr().out


FC_NET_BUGS = {
    "penalty left out of the gradients": ('            grads["W%d" % i] += self.reg * W\n', ""),
    "penalty's gradient of the other factor": ('grads["W%d" % i] += self.reg * W',
                                               'grads["W%d" % i] += 2 * self.reg * W'),
    "biases penalised": ("            loss += 0.5 * self.reg * np.sum(W * W)\n",
                         "            loss += 0.5 * self.reg * (np.sum(W * W) + np.sum(self.params['b%d' % i] ** 2))\n"),
    "scores without y": ("        if y is None:\n            return scores\n", ""),
    "a bias gradient not kept": ('grads["W%d" % i], grads["b%d" % i] = affine_backward(dout, affine_cache)',
                                 'grads["W%d" % i], _ = affine_backward(dout, affine_cache)'),
    "weights (out, in)": ("np.random.randn(dims[i], dims[i + 1])", "np.random.randn(dims[i + 1], dims[i])"),
    "ReLU after the last layer": ("        if y is None:", "        scores = np.maximum(scores, 0)\n        if y is None:"),
    "the last weights not penalised": ("        for i in range(1, last + 1):\n            W = self.params",
                                       "        for i in range(1, last):\n            W = self.params"),
    "each class counted": ("        loss, dout = softmax_loss(scores, y)\n",
                           "        loss, dout = softmax_loss(scores, y)\n"
                           "        dout = dout + 0 * np.bincount(y).reshape(1, -1)\n"),
}


@pytest.mark.parametrize("bug, told", [
    ("penalty left out of the gradients", "FullyConnectedNet.loss(X, y)'s loss has the penalty 0.5 reg sum(W^2), but "
                                          "its weights' gradients lack the penalty's term: add reg W to each"),
    ("penalty's gradient of the other factor", "but its weights' gradients are those of reg sum(W^2) (2 reg W): the "
                                               "loss's own penalty gives reg W"),
    ("biases penalised", "loss (reg = "),
    ("scores without y", "FullyConnectedNet.loss(X) returned a tuple: given no y, it returns the scores, (N, C)"),
    ("a bias gradient not kept", "FullyConnectedNet.loss(X, y)'s grads has no b1: it holds the gradient of each "),
    ("weights (out, in)", "FullyConnectedNet.params['W1'] has shape (6, 5), expected (5, 6) (the weights (in, out))"),
    ("ReLU after the last layer", "scores, loss(X): relative error"),
    ("each class counted", "FullyConnectedNet.loss(X, y) raised ValueError"),  # a batch that lacks a class
    ("the last weights not penalised", "FullyConnectedNet.loss(X, y)'s penalty leaves out W2: the L2 penalty takes "
                                       "every weight, W1 to W2, in the loss and in their gradients"),
])
def test_cs231n_fully_connected_net_is_graded_whole_and_its_bugs_are_told(tmp_path, bug, told):
    """CS231n's FullyConnectedNet (classifiers/fc_net.py) graded whole: its params set to the grader's weights,
    loss(X)'s scores and loss(X, y)'s loss and gradients against autograd, without and with the L2 penalty; each
    planted bug fails the row, the first failure naming the quantity; the correct file passes."""
    shutil.copy(CS231N[0], tmp_path / "layers.py")
    _planted(CS231N[3], FC_NET_BUGS, bug, tmp_path / "fc_net.py")
    row = grade([tmp_path / "layers.py", tmp_path / "fc_net.py"], resolve_convention("cs231n", None),
                only=["mlp"]).rows[0]
    assert row.title == "whole fully connected net, loss and gradients"
    assert row.passed < row.total == 4 and not row.skipped, row.failures
    assert told in row.first_failure, row.first_failure
    assert "steps=" not in row.first_failure  # a configuration's label carries what this check uses


FC_NET_MISUSES = {
    "params a property's copy": ([("self.params = {}", "self._p = {}"), ("self.params[", "self._p["),
                                  ("self.params.items()", "self._p.items()"),
                                  ("class FullyConnectedNet(object):\n", "class FullyConnectedNet(object):\n"
                                   "    @property\n    def params(self):\n        return dict(self._p)\n\n")],
                                 "what is written into FullyConnectedNet.params does not stay there"),
    "weights read from attributes": ([("        X = X.astype(self.dtype)\n", "        X = X.astype(self.dtype)\n"
                                       "        self.params = dict(self.first)\n"),
                                      ("        for k, v in self.params.items():\n            self.params[k] = "
                                       "v.astype(dtype)\n", "        for k, v in self.params.items():\n"
                                       "            self.params[k] = v.astype(dtype)\n        self.first = dict("
                                       "self.params)\n")],
                                     "FullyConnectedNet.loss(X) gives the scores of the network's own first weights"),
    "grads a list": ([("        return loss, grads\n", "        return loss, list(grads.values())\n")],
                     "FullyConnectedNet.loss(X, y)'s grads is a list, not a dict"),
    "three values": ([("        return loss, grads\n", "        return loss, grads, scores\n")],
                     "FullyConnectedNet.loss(X, y) returned 3 values, not (loss, grads)"),
    "no loss method": ([("    def loss(self, X, y=None):", "    def forward(self, X, y=None):")],
                       "FullyConnectedNet has no loss method"),
}


@pytest.mark.parametrize("misuse", list(FC_NET_MISUSES))
def test_a_network_that_misuses_the_courses_protocol_is_told_what(tmp_path, misuse):
    """A network whose params give a copy, whose loss reads weights kept elsewhere, whose grads are no dict, or
    that has no loss: each fails naming what the course's protocol expects, not a bare relative error."""
    shutil.copy(CS231N[0], tmp_path / "layers.py")
    text = CS231N[3].read_text()
    changes, told = FC_NET_MISUSES[misuse]
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    (tmp_path / "fc_net.py").write_text(text)
    row = grade([tmp_path / "layers.py", tmp_path / "fc_net.py"], resolve_convention("cs231n", None),
                only=["mlp"]).rows[0]
    assert row.passed == 0 < row.total and told in row.first_failure, row.first_failure


def test_a_network_made_as_students_make_theirs_passes(tmp_path):
    """A constructor that appends the sizes to the hidden_dims it is given (each network is made with its own
    copy), and an assignment 1 TwoLayerNet whose std has no default (the grader's weights replace the network's):
    both pass; a file with only TwoLayerNet, graded for FullyConnectedNet, is told to name it in a spec."""
    shutil.copy(CS231N[0], tmp_path / "layers.py")
    text = CS231N[3].read_text()
    old = "        dims = [input_dim] + list(hidden_dims) + [num_classes]\n"
    assert old in text
    (tmp_path / "fc_net.py").write_text(text.replace(old, "        dims = hidden_dims\n        dims.insert(0, "
                                                          "input_dim)\n        dims.append(num_classes)\n"))
    files = [tmp_path / "layers.py", tmp_path / "fc_net.py"]
    row = grade(files, resolve_convention("cs231n", None), only=["mlp"]).rows[0]
    assert row.passed == row.total == 4, row.failures
    (tmp_path / "fc_net.py").write_text(
        "import numpy as np\nfrom .layers import *\n\nclass TwoLayerNet:\n"
        "    def __init__(self, input_dim, hidden_dim, num_classes, weight_scale, reg=0.0):\n"
        "        self.reg = reg\n        self.params = {'W1': weight_scale * np.random.randn(input_dim, hidden_dim),"
        " 'b1': np.zeros(hidden_dim),\n                       'W2': weight_scale * np.random.randn(hidden_dim, "
        "num_classes), 'b2': np.zeros(num_classes)}\n\n"
        "    def loss(self, X, y=None):\n        h, c1 = affine_forward(X, self.params['W1'], self.params['b1'])\n"
        "        a, c2 = relu_forward(h)\n        scores, c3 = affine_forward(a, self.params['W2'], self.params['b2'])\n"
        "        if y is None:\n            return scores\n        loss, d = softmax_loss(scores, y)\n"
        "        loss += 0.5 * self.reg * (np.sum(self.params['W1'] ** 2) + np.sum(self.params['W2'] ** 2))\n"
        "        grads = {}\n        d, grads['W2'], grads['b2'] = affine_backward(d, c3)\n"
        "        d, grads['W1'], grads['b1'] = affine_backward(relu_backward(d, c2), c1)\n"
        "        grads['W1'] += self.reg * self.params['W1']\n        grads['W2'] += self.reg * self.params['W2']\n"
        "        return loss, grads\n")
    (tmp_path / "spec.toml").write_text('base = "cs231n"\n[layers.mlp]\nclass = "TwoLayerNet"\n')
    row = grade(files, resolve_convention(None, tmp_path / "spec.toml"), only=["mlp"]).rows[0]
    assert row.passed == row.total > 0, row.failures
    row = grade(files, resolve_convention("cs231n", None), only=["mlp"]).rows[0]
    assert "not found in the submission: FullyConnectedNet (TwoLayerNet is defined, not FullyConnectedNet: a spec " \
        "with base = \"cs231n\" and that name in this layer's table)" in row.first_failure, row.first_failure


def test_a_name_from_a_cython_module_of_the_courses_not_built_says_to_build_it(tmp_path):
    """A course file that imports its Cython module inside a try (as CS231n's fast layers do, printing how to build
    it): a layer that reaches a name of that module, not built here, fails saying where it is defined and how to
    build it."""
    top = tmp_path / "cs231n"
    top.mkdir()
    shutil.copy(CS231N[0], top / "layers.py")
    (top / "pool_cython.pyx").write_text("cimport numpy as np\n\ndef pool_back_cython(np.ndarray cols, int N):\n"
                                         "    pass\n")
    (top / "fast_layers.py").write_text("try:\n    from .pool_cython import pool_back_cython\nexcept ImportError:\n"
                                        "    print('run python setup.py build_ext --inplace')\n\n"
                                        "def relu_backward_fast(dout, cache):\n    return pool_back_cython(dout, 1)\n")
    (top / "net.py").write_text("from .layers import relu_forward\nfrom .fast_layers import *\n\n"
                                "def relu_backward(dout, cache):\n    return relu_backward_fast(dout, cache)\n")
    row = grade([top / "net.py"], resolve_convention("cs231n", None), only=["relu"]).rows[0]
    assert row.passed == 0 < row.total
    assert "NameError: name 'pool_back_cython' is not defined (pool_back_cython is defined in pool_cython.pyx, a " \
        "Cython module of the course's that is not built here: build it where it lies, `python setup.py build_ext " \
        "--inplace` in cs231n/ as the course says, then grade again)" in row.first_failure, row.first_failure


def test_cs231n_im2col_cython_not_built_is_given_by_its_numpy_version(tmp_path, capsys):
    """CS231n's fast layers need the course's compiled im2col_cython; where it was not built, twinnet's NumPy version
    is imported in its place (said once on stderr), so that a ThreeLayerConvNet on the fast layers is graded on the
    student's code; that version gives the course's arrays (checked against the loops of the course's .pyx)."""
    from twinnet.grader.courses.im2col_cython import col2im_6d_cython, col2im_cython, im2col_cython

    rng = np.random.default_rng(0)
    n, c, h, w, f, pad, s = 2, 3, 7, 6, 3, 1, 2
    x = rng.standard_normal((n, c, h, w))
    oh, ow = (h + 2 * pad - f) // s + 1, (w + 2 * pad - f) // s + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols, g6 = np.zeros((c * f * f, n * oh * ow)), rng.standard_normal((c, f, f, n, oh, ow))
    back, back6 = np.zeros_like(xp), np.zeros_like(xp)
    g = rng.standard_normal(cols.shape)
    for ch, i, j, y, xx, k in np.ndindex(c, f, f, oh, ow, n):
        row, col = ch * f * f + i * f + j, y * ow * n + xx * n + k
        cols[row, col] = xp[k, ch, s * y + i, s * xx + j]
        back[k, ch, s * y + i, s * xx + j] += g[row, col]
        back6[k, ch, s * y + i, s * xx + j] += g6[ch, i, j, k, y, xx]
    assert np.array_equal(im2col_cython(x, f, f, pad, s), cols)
    assert np.allclose(col2im_cython(g, n, c, h, w, f, f, pad, s), back[:, :, pad:-pad, pad:-pad])
    assert np.allclose(col2im_6d_cython(g6, n, c, h, w, f, f, pad, s), back6[:, :, pad:-pad, pad:-pad])

    top = tmp_path / "cs231n"
    (top / "classifiers").mkdir(parents=True)
    shutil.copy(CS231N[0], top / "layers.py")
    (top / "im2col_cython.pyx").write_text("# the course's Cython source, never built here\n")
    (top / "fast_layers.py").write_text(
        "import numpy as np\ntry:\n    from .im2col_cython import col2im_6d_cython\nexcept ImportError:\n"
        "    print('run python setup.py build_ext --inplace')\n\n"
        "def conv_forward_fast(x, w, b, conv_param):\n    from .layers import conv_forward_naive\n"
        "    return conv_forward_naive(x, w, b, conv_param)\n\n"
        "def conv_backward_fast(dout, cache):\n    x, w, b, conv_param = cache\n"
        "    pad, stride = conv_param['pad'], conv_param['stride']\n    N, C, H, W = x.shape\n"
        "    F, _, HH, WW = w.shape\n    _, _, out_h, out_w = dout.shape\n    db = dout.sum(axis=(0, 2, 3))\n"
        "    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))\n"
        "    cols = np.lib.stride_tricks.sliding_window_view(xp, (HH, WW), axis=(2, 3))[:, :, ::stride, ::stride]\n"
        "    cols = cols.transpose(1, 4, 5, 0, 2, 3)  # (C, HH, WW, N, out_h, out_w)\n"
        "    d = dout.transpose(1, 0, 2, 3).reshape(F, -1)\n"
        "    dw = d.dot(cols.reshape(C * HH * WW, -1).T).reshape(w.shape)\n"
        "    dx_cols = w.reshape(F, -1).T.dot(d).reshape(C, HH, WW, N, out_h, out_w)\n"
        "    return col2im_6d_cython(dx_cols, N, C, H, W, HH, WW, pad, stride), dw, db\n")
    text = CS231N[4].read_text().replace("from .layers import (", "from ..fast_layers import conv_forward_fast, "
                                         "conv_backward_fast\nfrom ..layers import (")
    text = text.replace("conv_forward_naive(X,", "conv_forward_fast(X,").replace("conv_backward_naive(dout,",
                                                                                 "conv_backward_fast(dout,")
    (top / "classifiers" / "cnn.py").write_text(text)
    row = grade([top / "classifiers" / "cnn.py"], resolve_convention("cs231n", None), only=["convnet"]).rows[0]
    assert row.passed == row.total == 3, row.failures
    err = capsys.readouterr().err
    assert err.count("im2col_cython, the course's Cython module, is not built here; twinnet's NumPy version of it is "
                     "used in its place") == 1, err
    assert "setup.py" not in err  # the course's own message: the import did not fail


CONVNET_BUGS = {
    "no padding": ('"pad": (W1.shape[2] - 1) // 2', '"pad": 0'),
    "the first weights not penalised": ("np.sum(W1 * W1) + ", ""),
    "no ReLU after the convolution": ("        out, relu1_cache = relu_forward(out)\n",
                                      "        relu1_cache = np.ones_like(out)\n"),
    "its input standardised in place": ("        W1, b1 = ", "        X -= X.mean()\n        W1, b1 = "),
    "W2 sized from the width alone": ("num_filters * (H // 2) * (W // 2)", "num_filters * (W // 2) ** 2"),
}


@pytest.mark.parametrize("bug, told", [
    ("no padding", "ThreeLayerConvNet.loss(X) raised"),
    ("the first weights not penalised", "ThreeLayerConvNet.loss(X, y)'s penalty leaves out W1"),
    ("no ReLU after the convolution", "scores, loss(X): relative error"),
    ("its input standardised in place", "modified its input X in place"),
    ("W2 sized from the width alone", "wrong only where the height and width differ: the same network passes on a "
                                      "square image (H = W = 8)"),
])
def test_cs231n_three_layer_convnet_is_graded_whole_and_its_bugs_are_told(tmp_path, bug, told):
    """CS231n's ThreeLayerConvNet (classifiers/cnn.py): conv (padded to keep the size), ReLU, 2x2 max pool,
    affine, ReLU, affine, graded whole against autograd on small images; each planted bug fails the row, the
    first failure naming what is wrong; the correct file passes every configuration."""
    shutil.copy(CS231N[0], tmp_path / "layers.py")
    files = [tmp_path / "layers.py", _planted(CS231N[4], CONVNET_BUGS, None, tmp_path / "cnn.py")]
    row = grade(files, resolve_convention("cs231n", None), only=["convnet"]).rows[0]
    assert row.title == "whole ConvNet, loss and gradients" and row.passed == row.total == 3, row.failures
    _planted(CS231N[4], CONVNET_BUGS, bug, tmp_path / "cnn.py")
    row = grade(files, resolve_convention("cs231n", None), only=["convnet"]).rows[0]
    assert row.passed < row.total == 3 and told in row.first_failure, row.first_failure


@pytest.mark.parametrize("penalty", ["0.5 * self.reg * np.sum(W * W)", "self.reg * np.sum(W * W)"])
def test_a_loss_given_as_a_one_element_array_is_read_with_either_penalty(tmp_path, penalty):
    """A network whose loss is a 1-element array (np.sum(..., keepdims=True)) passes with either of the course's
    penalty factors: its factor is read from that value as from a float."""
    shutil.copy(CS231N[0], tmp_path / "layers.py")
    text = CS231N[3].read_text()
    text = text.replace("            loss += 0.5 * self.reg * np.sum(W * W)\n", f"            loss += {penalty}\n")
    gradient = "self.reg * W" if penalty.startswith("0.5") else "2 * self.reg * W"
    text = text.replace('grads["W%d" % i] += self.reg * W', f'grads["W%d" % i] += {gradient}')
    text = text.replace("        return loss, grads\n", "        return np.array([loss]), grads\n")
    (tmp_path / "fc_net.py").write_text(text)
    row = grade([tmp_path / "layers.py", tmp_path / "fc_net.py"], resolve_convention("cs231n", None),
                only=["mlp"]).rows[0]
    assert row.passed == row.total == 4, row.failures


@pytest.mark.parametrize("factor", ["0.5 * ", ""])
def test_a_network_whose_penalty_has_either_of_the_courses_factors_passes(tmp_path, factor):
    """The course's L2 penalty has been 0.5 reg sum(W^2) and reg sum(W^2) (assignment 1's TwoLayerNet before 2020):
    a network consistent with either passes, its gradients graded with its own factor; the old TwoLayerNet, made
    with (input_size, hidden_size, output_size) and given reg in loss(X, y, reg), is graded through a spec that
    names it, its two-hidden-layer configurations not applicable."""
    shutil.copy(CS231N[0], tmp_path / "layers.py")
    (tmp_path / "neural_net.py").write_text(
        "import numpy as np\nfrom .layers import *\n\nclass TwoLayerNet:\n"
        "    def __init__(self, input_size, hidden_size, output_size, std=1e-4):\n"
        "        self.params = {'W1': std * np.random.randn(input_size, hidden_size), 'b1': np.zeros(hidden_size),\n"
        "                       'W2': std * np.random.randn(hidden_size, output_size), 'b2': np.zeros(output_size)}\n\n"
        "    def loss(self, X, y=None, reg=0.0):\n        N, D = X.shape  # the (N, D) its docstring gives\n"
        "        W1, b1, W2, b2 = (self.params[k] for k in ('W1', 'b1', 'W2', 'b2'))\n"
        "        h, c1 = affine_forward(X, W1, b1)\n        a, c2 = relu_forward(h)\n"
        "        scores, c3 = affine_forward(a, W2, b2)\n        if y is None:\n            return scores\n"
        "        loss, d = softmax_loss(scores, y)\n"
        f"        loss += {factor}reg * (np.sum(W1 * W1) + np.sum(W2 * W2))\n        grads = {{}}\n"
        "        d, grads['W2'], grads['b2'] = affine_backward(d, c3)\n        d = relu_backward(d, c2)\n"
        "        d, grads['W1'], grads['b1'] = affine_backward(d, c1)\n"
        f"        grads['W1'] += {'' if factor else '2 * '}reg * W1\n"
        f"        grads['W2'] += {'' if factor else '2 * '}reg * W2\n        return loss, grads\n")
    (tmp_path / "spec.toml").write_text('base = "cs231n"\n[layers.mlp]\nclass = "TwoLayerNet"\n')
    files = [tmp_path / "layers.py", tmp_path / "neural_net.py"]
    [row] = grade(files, resolve_convention(None, tmp_path / "spec.toml"), only=["mlp"], configs=4).rows
    assert row.passed == row.total == 2 and row.skipped == 2, row.failures  # a two-layer net: one hidden layer
    text = (tmp_path / "neural_net.py").read_text()  # the penalty's gradient of the other factor: fails
    (tmp_path / "neural_net.py").write_text(text.replace("+= 2 * reg" if not factor else "+= reg", "+= 3 * reg"))
    [row] = grade(files, resolve_convention(None, tmp_path / "spec.toml"), only=["mlp"], configs=4).rows
    assert row.passed == 0 < row.total and "grads['W1'] (reg = " in row.first_failure, row.first_failure


SHARED_PARAMS = """import numpy as np

class LinearModule:
    params = {}
    grads = {}

    def __init__(self, in_features, out_features):
        self.params = self.params  # SHARED
        self.params["weight"] = np.random.normal(0.0, 0.1, size=(out_features, in_features))
        self.params["bias"] = np.zeros((1, out_features))
        self.grads["weight"] = np.zeros_like(self.params["weight"])
        self.grads["bias"] = np.zeros_like(self.params["bias"])

    def forward(self, x):
        self.x = x
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, dout):
        self.grads["weight"] = dout.T @ self.x
        self.grads["bias"] = dout.sum(0, keepdims=True)
        return dout @ self.params["weight"]
"""


@pytest.mark.parametrize("shared", ["params", "grads"])
def test_a_params_dict_shared_by_every_instance_is_named(tmp_path, shared):
    """A layer whose params (or grads) dict is a class attribute that __init__ fills: one dict for every
    instance, so an MLP's layers overwrite each other's weights. Graded alone it computes right, and at a square
    weight the layer built to read its layout had overwritten it, blamed as a wrong shape (7/10 at seed 0): now
    every configuration fails, naming the shared dict; the same layer with a dict of its own passes."""
    own = SHARED_PARAMS.replace("        self.params = self.params  # SHARED\n",
                                "        self.params, self.grads = {}, {}\n")
    shared_one = own.replace("self.params, self.grads = {}, {}", "self.grads = {}" if shared == "params"
                             else "self.params = {}")
    for source, passed in ((own, 10), (shared_one, 0)):
        (tmp_path / "modules.py").write_text(source)
        row = grade([tmp_path / "modules.py"], resolve_convention("uva", None), only=["linear"], seed=0).rows[0]
        assert (row.passed, row.total) == (passed, 10), row.failures
    assert f"LinearModule.{shared} is one dict shared by every LinearModule" in row.first_failure
    assert all("shared by every" in f for f in row.failures)


def test_cs324_takes_a_row_bias(tmp_path):
    """CS324's handout fixes W's layout, not the bias's: a (1, out) bias passes the layer and the MLP."""
    for name in ("modules.py", "mlp_numpy.py"):
        source = (STUDENTS / "cs324" / name).read_text()
        if name == "modules.py":
            for old, new in (("'bias': np.zeros(out_features)", "'bias': np.zeros((1, out_features))"),
                             ("np.sum(dout, axis=0)", "np.sum(dout, axis=0, keepdims=True)")):
                assert old in source
                source = source.replace(old, new)
        (tmp_path / name).write_text(source)
    rows = _rows(grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention("cs324", None),
                       only=["linear", "mlp"]))
    assert rows["linear"].passed == rows["linear"].total and rows["mlp"].passed == rows["mlp"].total == 4, \
        [rows[k].failures for k in rows]


def test_an_mlp_whose_backward_updates_its_weights_or_whose_last_layer_has_an_activation_is_named(tmp_path):
    # an SGD step inside the linear layer's backward: its gradients are right, the MLP takes two steps
    files = _uva_copy(tmp_path, modules=lambda s: s.replace(
        "        self.grads['bias'] = np.sum(dout, axis=0, keepdims=True)\n",
        "        self.grads['bias'] = np.sum(dout, axis=0, keepdims=True)\n"
        "        self.params['weight'] -= 0.1 * self.grads['weight']\n", 1))
    assert "self.params['weight'] -= 0.1" in files[0].read_text()
    row = grade(files, resolve_convention("uva", None), only=["mlp"]).rows[0]
    assert row.passed == 0 and "MLP.backward changed layer 1's weight: an update inside backward" in \
        row.first_failure, row.failures
    # a backward that reshapes its bias, the same values (UvA allows any bias layout): not an update
    files = _uva_copy(tmp_path, modules=lambda s: s.replace(
        "        self.grads['bias'] = np.sum(dout, axis=0, keepdims=True)\n",
        "        self.grads['bias'] = np.sum(dout, axis=0, keepdims=True)\n"
        "        self.params = {'weight': self.params['weight'], 'bias': self.params['bias'].reshape(-1)}\n", 1))
    row = grade(files, resolve_convention("uva", None), only=["mlp"]).rows[0]
    assert not any("update inside backward" in f for f in row.failures), row.failures
    # a ReLU after the output layer too, before the softmax
    old = "        self.layers.append(SoftMaxModule())\n"
    files = _uva_copy(tmp_path, mlp=lambda s: s.replace(old, "        self.layers.append(ReLUModule())\n" + old))
    assert files[1].read_text().count("ReLUModule()") == 2
    row = grade(files, resolve_convention("uva", None), only=["mlp"]).rows[0]
    assert any("a ReLU after every LinearModule layer, the last one too" in f for f in row.failures), row.failures


def test_a_loss_summed_over_the_batch_is_named_as_a_factor(tmp_path):
    files = _uva_copy(tmp_path, modules=lambda s: s.replace("out = -np.mean(np.log(x[np.arange(N), y]))",
                                                            "out = -np.sum(np.log(x[np.arange(N), y]))"))
    row = grade(files, resolve_convention("uva", None), only=["softmax_cross_entropy"]).rows[0]
    assert any("n=4" in f and "loss: relative error" in f and "it is exactly 4 times the expected value" in f
               for f in row.failures), row.failures


def test_an_unfinished_convolution_backward_earns_nothing_at_any_seed(tmp_path):
    """A backward that leaves dx and dw zero passed drawn configurations whose every window lay in the padding
    (h=5 w=2 k=1 s=3 p=1 at seed 1), where the right gradients are zero too: those are no longer drawn."""
    source = (STUDENTS / "cs231n" / "layers.py").read_text()
    old = "    x, w, b, conv_param = cache\n"
    assert source.count(old) == 1
    (tmp_path / "layers.py").write_text(source.replace(old, old + "    return np.zeros_like(x), np.zeros_like(w), "
                                                                  "dout.sum(axis=(0, 2, 3))\n"))
    for seed in (1, 2, 5):
        row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["conv"], seed=seed).rows[0]
        assert row.passed == 0, (seed, row.failures)


def test_the_alternative_batch_norm_backward_is_graded_on_its_own_row(tmp_path):
    """CS231n's batchnorm_backward_alt: optional (not submitted where absent), and a wrong one fails its own row
    while batchnorm_backward's passes."""
    source = (STUDENTS / "cs231n" / "layers.py").read_text()
    old = "    dx = (dx_hat - dx_hat.mean(axis=0) - x_hat * (dx_hat * x_hat).mean(axis=0)) / std\n"
    assert source.count(old) == 1
    (tmp_path / "layers.py").write_text(source.replace(old, "    dx = (dx_hat - x_hat * (dx_hat * x_hat).mean(axis=0))"
                                                            " / std\n"))
    rows = _rows(grade([tmp_path / "layers.py"], resolve_convention("cs231n", None),
                       only=["batchnorm", "batchnorm_alt"]))
    assert rows["batchnorm"].passed == rows["batchnorm"].total
    assert rows["batchnorm_alt"].passed == 0 and "dx: relative error" in rows["batchnorm_alt"].first_failure
    (tmp_path / "layers.py").write_text(source.replace("def batchnorm_backward_alt", "def _unused"))
    row = _rows(grade([tmp_path / "layers.py"], resolve_convention("cs231n", None)))["batchnorm_alt"]
    assert not row.submitted and row.max_points == 0


def test_a_1d_convolution_is_named_as_one_the_conv_kind_cannot_grade(tmp_path):
    """CMU's HW2P1 Conv1d through a spec: its (out, in, kernel) weight is said to be a 1-D convolution's, not a
    wrong shape of the student's."""
    (tmp_path / "conv1d.py").write_text(
        "import numpy as np\n\n\nclass Conv1d:\n"
        "    def __init__(self, in_channels, out_channels, kernel_size, *args, **kwargs):\n"
        "        self.W = np.zeros((out_channels, in_channels, kernel_size))\n"
        "        self.b = np.zeros(out_channels)\n\n"
        "    def forward(self, A):\n        return A\n\n    def backward(self, dLdZ):\n        return dLdZ\n")
    (tmp_path / "spec.toml").write_text('name = "conv1d"\nstyle = "module"\n[layers.conv]\nclass = "Conv1d"\n'
                                        'params = {weight = "W", bias = "b"}\n'
                                        'grads = {weight = "dLdW", bias = "dLdb"}\n')
    from twinnet.grader.conventions import load_spec

    row = grade([tmp_path / "conv1d.py"], load_spec(tmp_path / "spec.toml"), only=["conv"]).rows[0]
    assert row.passed == 0 and "a 1-D convolution, which the conv kind, 2-D on (N, C, H, W) images, cannot grade" \
        in row.first_failure, row.failures


def test_a_max_pool_backward_that_assigns_where_windows_overlap_is_named(tmp_path):
    source = (STUDENTS / "cs231n" / "layers.py").read_text()
    old = "dx[n, c, hs + a, ws + bb] += dout[n, c, i, j]"
    assert source.count(old) == 1
    (tmp_path / "layers.py").write_text(source.replace(old, "dx[n, c, hs + a, ws + bb] = dout[n, c, i, j]"))
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["maxpool"]).rows[0]
    assert 0 < row.passed < row.total  # the windows that do not overlap pass
    assert all("windows overlap" in f and "add each window's" in f for f in row.failures), row.failures
    # the same bug written as a mask over the whole window, which also zeroes the rest of it
    (tmp_path / "layers.py").write_text(source.replace(
        old, "dx[n, c, hs:hs + ph, ws:ws + pw] = (window == window.max()) * dout[n, c, i, j]"))
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["maxpool"]).rows[0]
    assert 0 < row.passed < row.total and all("windows overlap" in f for f in row.failures), row.failures


def test_running_statistics_kept_with_keepdims_pass_and_a_forward_bug_is_not_charged_to_the_alternative_backward(
        tmp_path):
    """A batch mean taken with keepdims=True leaves running_mean (1, D), and a sum so dgamma and dbeta: the course's
    test mode and checks broadcast them alike, so batch norm and spatial batch norm pass at every D; a bug in the
    forward's test mode fails batch norm's row and not ``batchnorm_alt``'s, which grades the alternative backward's
    gradients."""
    source = CS231N[0].read_text()
    keepdims = [("        mu = np.mean(x, axis=0)\n", "        mu = np.mean(x, axis=0, keepdims=True)\n"),
                ("        var = np.var(x, axis=0)\n", "        var = np.var(x, axis=0, keepdims=True)\n")]
    for old, new in keepdims:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    start, end = source.index("def batchnorm_backward("), source.index("def batchnorm_backward_alt(")
    backward = source[start:end]
    for old in ("    dbeta = np.sum(dout, axis=0", "    dgamma = np.sum(dout * x_hat, axis=0"):
        assert backward.count(old + ")\n") == 1, old
        backward = backward.replace(old + ")\n", old + ", keepdims=True)\n")
    source = source[:start] + backward + source[end:]
    (tmp_path / "layers.py").write_text(source)
    rows = _rows(grade([tmp_path / "layers.py"], resolve_convention("cs231n", None),
                       only=["batchnorm", "spatial_batchnorm", "batchnorm_alt"], configs=6))
    assert all(r.total > 6 and r.passed == r.total for r in rows.values()), {k: r.failures for k, r in rows.items()}
    test_mode = "        x_hat = (x - running_mean) / np.sqrt(running_var + eps)\n"
    assert source.count(test_mode) == 1
    (tmp_path / "layers.py").write_text(source.replace(test_mode, "        x_hat = (x - running_mean) / np.sqrt("
                                                                  "running_var) + eps\n"))
    rows = _rows(grade([tmp_path / "layers.py"], resolve_convention("cs231n", None),
                       only=["batchnorm", "batchnorm_alt"], configs=6))
    assert rows["batchnorm"].passed < rows["batchnorm"].total and "test mode" in rows["batchnorm"].first_failure
    assert rows["batchnorm_alt"].total > 6 and rows["batchnorm_alt"].passed == rows["batchnorm_alt"].total


@pytest.mark.parametrize("old, new, said, where", [
    ("std = np.sqrt(var + eps)", "std = np.sqrt(var) + np.sqrt(eps)", "sqrt(var) + sqrt(eps)", "out"),
    ("std = np.sqrt(var + eps)", "std = np.sqrt(var) + eps", "eps outside the square root", "out"),
    ("x_hat = (x - running_mean) / np.sqrt(running_var + eps)", "x_hat = (x - running_mean) / np.sqrt(running_var)",
     "with no eps", "out (test mode)")])
def test_a_batch_norm_with_its_eps_misplaced_is_told_where_and_its_alternative_backward_blames_the_forward(
        tmp_path, old, new, said, where):
    """A batch norm dividing by sqrt(var) + sqrt(eps) (a Berkeley CS182 student's), sqrt(var) + eps, or, in test
    mode, sqrt(var) alone (another's): a relative error of about 1e-4 said nothing of eps. Now named; and the
    alternative backward, which is given that forward's cache, says that the forward is what to mend first."""
    source = CS231N[0].read_text()
    assert old in source.split("def batchnorm_forward")[1].split("\ndef ")[0]  # the first is batch norm's
    (tmp_path / "layers.py").write_text(source.replace(old, new, 1))
    rows = _rows(grade([tmp_path / "layers.py"], resolve_convention("cs231n", None),
                       only=["batchnorm", "batchnorm_alt"], configs=3))
    assert rows["batchnorm"].passed == 0, rows["batchnorm"].failures
    assert all(f"{where} divides by" in f and said in f and "put eps inside the square root" in f
               for f in rows["batchnorm"].failures), rows["batchnorm"].failures
    alt = rows["batchnorm_alt"]
    if where == "out":  # the cache carries the train-mode std: the alternative backward is told to wait for it
        assert alt.passed == 0 and "batchnorm_forward's out is wrong here too" in alt.first_failure, alt.failures
        assert "mend the forward (the batch norm row) first" in alt.first_failure
    else:  # test mode's bug does not reach the training cache: its gradients pass
        assert alt.passed == alt.total > 0, alt.failures


def test_a_course_whose_test_mode_has_no_eps_says_so_and_a_far_bug_is_told_before_that_near_miss(tmp_path):
    """TUM's I2DL gives a batch norm whose test mode divides by sqrt(running_var): under cs231n it fails as a
    misplaced eps; a spec's test_eps = "none" grades it as right. Beside a training bug (its variance taken over
    the wrong axis, far off), the training bug is told first, not the test mode's near miss, which hid it."""
    source = CS231N[0].read_text()
    test_mode = "x_hat = (x - running_mean) / np.sqrt(running_var + eps)"
    assert source.count(test_mode) == 1
    source = source.replace(test_mode, "x_hat = (x - running_mean) / np.sqrt(running_var)")
    (tmp_path / "layers.py").write_text(source)
    (tmp_path / "i2dl.toml").write_text('base = "cs231n"\n[layers.batchnorm]\ntest_eps = "none"\n'
                                        '[layers.spatial_batchnorm]\ntest_eps = "none"\n')
    kinds = ["batchnorm", "spatial_batchnorm"]
    told = _rows(grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=kinds, configs=3))
    assert all("out (test mode) divides by sqrt(var), with no eps" in told[k].first_failure for k in kinds)
    right = _rows(grade([tmp_path / "layers.py"], resolve_convention(None, tmp_path / "i2dl.toml"), only=kinds,
                        configs=3))
    assert all(right[k].passed == right[k].total > 0 for k in kinds), {k: right[k].failures for k in kinds}
    eps_kept = _rows(grade(CS231N, resolve_convention(None, tmp_path / "i2dl.toml"), only=kinds, configs=3))
    assert all(eps_kept[k].passed == 0 and "divides by sqrt(var + eps) (eps = " in eps_kept[k].first_failure and
               'test_eps = "none"' in eps_kept[k].first_failure for k in kinds), {k: eps_kept[k].failures for k in kinds}
    mean = "mu = np.mean(x, axis=0)"
    assert source.count(mean) == 1
    (tmp_path / "layers.py").write_text(source.replace(mean, "mu = np.mean(x, axis=0) + 0.1"))
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["batchnorm"], configs=3).rows[0]
    assert row.passed == 0 and not any("with no eps" in f for f in row.failures), row.failures


def test_an_alternative_backward_whose_cache_is_right_passes_beside_a_forward_whose_output_is_not(tmp_path):
    """A forward whose output divides by sqrt(var) + eps but whose cache keeps the right std: the batch norm row
    fails naming the eps, and the alternative backward, whose gradients are right, passes."""
    old = "        out = gamma * x_hat + beta\n        cache = (x_hat, gamma, std)\n"
    source = CS231N[0].read_text()
    assert source.count(old) == 1
    (tmp_path / "layers.py").write_text(source.replace(old, "        out = gamma * (x - mu) / (np.sqrt(var) + eps) + "
                                                            "beta\n        cache = (x_hat, gamma, std)\n"))
    rows = _rows(grade([tmp_path / "layers.py"], resolve_convention("cs231n", None),
                       only=["batchnorm", "batchnorm_alt"], configs=3))
    assert rows["batchnorm"].passed == 0 and "eps outside the square root" in rows["batchnorm"].first_failure
    assert rows["batchnorm_alt"].passed == rows["batchnorm_alt"].total > 0, rows["batchnorm_alt"].failures


def test_a_batch_norm_eps_far_below_the_conventions_is_not_told_as_none(tmp_path):
    """CMU's batch norm divides by sqrt(V + 1e-8): graded under a spec left at eps 1e-5 it fails, as the
    setting is wrong, but it is not told to add an eps it has (1e-8 is within 1e-8 of no eps at all)."""
    spec = MYTORCH_SPEC.replace("eps = 1e-8\n", "")
    row = _rows(_mytorch(tmp_path, spec, only=["batchnorm"], configs=2))["batchnorm"]
    assert row.passed < row.total and not any("with no eps" in f for f in row.failures), row.failures


def test_numpy_1_reshape_keyword_is_explained(tmp_path):
    """NumPy 2.4 removed reshape's newshape= keyword: the error names it and what to write instead."""
    source = CS231N[0].read_text()
    assert source.count("def affine_forward(x, w, b):\n") == 1
    source = source.replace("def affine_forward(x, w, b):\n", "def affine_forward(x, w, b):\n"
                            "    x = np.reshape(x, newshape=x.shape)\n")
    (tmp_path / "layers.py").write_text(source)
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["linear"], configs=1).rows[0]
    try:
        np.reshape(np.zeros(1), newshape=(1,))
        removed = False  # NumPy 1 to 2.3: the keyword still works
    except TypeError:
        removed = True
    assert row.passed == 0 if removed else row.passed == row.total
    if removed:
        assert "no newshape= keyword" in row.first_failure and "np.reshape(a, shape)" in row.first_failure
        assert 'pip install "numpy<2"' in row.first_failure


@pytest.mark.parametrize("call, name, instead", [("np.lib.pad(x, 0, 'constant')", "np.lib.pad", "np.pad"),
                                                  ("x + np.asscalar(np.zeros(1))", "np.asscalar", "a.item()"),
                                                  ("x.astype(np.float)", "np.float", "float (or np.float64)")])
def test_numpy_1_names_removed_since_are_explained(tmp_path, call, name, instead):
    """A name NumPy 1 had and this NumPy has not (np.lib.pad, as CS231n's 2016 convolutions call it; the
    aliases removed in 1.24): the error names it as NumPy 1's and what to write instead."""
    source = CS231N[0].read_text()
    source = source.replace("def affine_forward(x, w, b):\n", f"def affine_forward(x, w, b):\n    x = {call}\n")
    (tmp_path / "layers.py").write_text(source)
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["linear"], configs=1).rows[0]
    try:
        eval(name, {"np": np})
        gone = False  # an older NumPy that still has it
    except AttributeError:
        gone = True
    assert row.passed == 0 if gone else row.passed == row.total
    if gone:
        assert f"{name} is NumPy 1's" in row.first_failure and f"needs {instead}" in row.first_failure, row.failures
        # NumPy 1.26 has np.lib.pad, not the aliases 1.24 removed: only where it has them is it advised
        assert ('pip install "numpy<2"' in row.first_failure) == (name == "np.lib.pad"), row.first_failure
    from twinnet.grader.loader import era_hint

    assert "np.squeeze" in era_hint(AttributeError("module 'numpy.lib' has no attribute 'squeeze'"))
    assert "numpy<2" not in era_hint(AttributeError("module 'numpy.lib' has no attribute 'squeeze'"))  # nor 1.26's



def test_a_numpy_name_that_never_was_gets_no_numpy_1_hint():
    """np.random.zeros and np.lib.sum never existed: no claim that NumPy 1 had them."""
    from twinnet.grader.loader import era_hint

    for text in ("module 'numpy.random' has no attribute 'zeros'", "module 'numpy.lib' has no attribute 'sum'",
                 "module 'numpy' has no attribute 'zeros_like_this'"):
        assert era_hint(AttributeError(text)) == ""
    assert "np.pad" in era_hint(AttributeError("module 'numpy.lib' has no attribute 'pad'"))


def test_a_near_miss_in_the_loss_does_not_hide_a_gradient_far_off(tmp_path):
    """An epsilon no course writes (5e-7) inside the log leaves the loss about 1e-6 off; a backward without its
    1 / N is N times off: the failure told is the gradient's, not the loss's near miss, which alone is still told,
    as one."""
    modules = (STUDENTS / "cs324" / "modules.py").read_text()
    shutil.copy(STUDENTS / "cs324" / "mlp_numpy.py", tmp_path / "mlp_numpy.py")
    epsilon = ("        return -np.sum(y * np.log(x)) / N\n", "        return -np.sum(y * np.log(x + 5e-7)) / N\n")
    no_mean = ("        return (x - y) / N\n", "        return x - y\n")
    assert all(modules.count(old) == 1 for old, _ in (epsilon, no_mean))
    for edits, told in (([epsilon, no_mean], "dx is the gradient of the losses' sum, 2 (N) times the mean's"),
                        ([epsilon], "confidently_wrong=True: loss")):
        text = modules
        for old, new in edits:
            text = text.replace(old, new)
        (tmp_path / "modules.py").write_text(text)
        row = grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention("cs324", None),
                    only=["softmax_cross_entropy"], configs=2).rows[0]
        assert row.passed < row.total and told in row.first_failure, row.failures
    # the epsilon alone: far off only where the true class is at ~1e-22 (by design); elsewhere named a near miss
    assert any("loss: relative error" in f and "a near miss: a small constant" in f for f in row.failures)


def test_an_unfinished_loss_earns_nothing_where_only_the_softmax_is_graded(tmp_path):
    """cs324's one-hot loss of probabilities cannot be graded where a wrong class's probability underflows to 0
    (logits of size 1000), so only the softmax is graded there; the loss is still called, and a loss that raises
    (a stub) makes that configuration n/a rather than a pass: 0 points, not 0.1. A right loss that raises only at
    a probability of exactly 0 loses nothing."""
    modules = (STUDENTS / "cs324" / "modules.py").read_text()
    shutil.copy(STUDENTS / "cs324" / "mlp_numpy.py", tmp_path / "mlp_numpy.py")
    forward = "        return -np.sum(y * np.log(x)) / N\n"
    backward = "        return (x - y) / N\n"
    assert modules.count(forward) == 1 and modules.count(backward) == 1
    strict = "        with np.errstate(divide='raise', invalid='raise'):\n            return -np.sum(y * np.log(x)) / N\n"
    for old_new, points in ((((forward, "        raise NotImplementedError\n"),
                               (backward, "        raise NotImplementedError\n")), 0.0),
                            (((forward, strict),), 1.0)):
        text = modules
        for old, new in old_new:
            text = text.replace(old, new)
        (tmp_path / "modules.py").write_text(text)
        row = grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention("cs324", None),
                    only=["softmax_cross_entropy"]).rows[0]
        assert row.skipped == 1 and row.total == 9 and row.points == points, (row.failures, row.points)


# a round epsilon inside the log, in each convention's loss: (convention, files, file edited, kind, edits)
LOG_EPSILON_CASES = [
    ("cs231n", CS231N, "layers.py", "softmax_loss",  # logits: the log of the softmax's probabilities, guarded
     (("    loss = -np.sum(log_probs[np.arange(N), y]) / N\n",
       "    loss = -np.sum(np.log(probs[np.arange(N), y] + 1e-8)) / N\n"),)),
    ("uva", UVA, "modules.py", "softmax_cross_entropy",  # probabilities and labels, the epsilon in dx too
     (("        out = -np.mean(np.log(x[np.arange(N), y]))\n",
       "        out = -np.mean(np.log(x[np.arange(N), y] + 1e-6))\n"),
      ("        dx[np.arange(N), y] = -1.0 / (N * x[np.arange(N), y])\n",
       "        dx[np.arange(N), y] = -1.0 / (N * (x[np.arange(N), y] + 1e-6))\n"))),
    ("cs324", CS324, "modules.py", "softmax_cross_entropy",  # one-hot targets, softmax and loss fused in backward
     (("        return -np.sum(y * np.log(x)) / N\n", "        return -np.sum(y * np.log(x + 1e-7)) / N\n"),)),
]


@pytest.mark.parametrize("convention, files, edited, kind, edits", LOG_EPSILON_CASES,
                         ids=[c[0] for c in LOG_EPSILON_CASES])
def test_a_round_epsilon_inside_the_log_fails_only_where_it_caps_the_loss(tmp_path, convention, files, edited, kind,
                                                                          edits):
    """-log(p + 1e-7) misses the exact loss by about eps / p: at some seeds above the tolerance, at others not.
    Graded against the loss with that epsilon, it passes wherever every true class is far more probable than the
    epsilon, at every seed, and fails, the epsilon named, where one is not (the true class at ~1e-22 always)."""
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / edited).write_text(_edited((tmp_path / edited).read_text(), edits))
    eps = re.search(r"\+ (1e-\d+)\)", edits[0][1]).group(1)
    told = f"loss is the cross-entropy with its log guarded by {eps} (log(p + {eps}), or p clipped at {eps}), which"
    for seed in (0, 1, 2, 3):
        row = grade([tmp_path / f.name for f in files], resolve_convention(convention, None), only=[kind], seed=seed,
                    configs=8).rows[0]
        assert all(told in f and f"caps each sample's loss at -log({eps})" in f and "where the cross-entropy is " in f
                   for f in row.failures), row.failures
        assert any("confidently_wrong=True" in f for f in row.failures), row.failures
        # logits of size 1 put no true class below 1e-5, a thousand times the logits' 1e-8 (probabilities: 1e-2)
        assert not [f for f in row.failures if " scale=1.0" in f and "confidently_wrong" not in f], row.failures
        assert row.passed > row.total / 2, row.failures


def test_an_epsilon_in_the_loss_with_a_gradient_wrong_elsewhere_is_still_caught(tmp_path):
    """The epsilon's reference is given only to what matches it: a loss with 1e-7 inside its log whose dx
    forgets the 1 / N fails dx, N times too large, in every configuration of a batch of more than one."""
    for f in CS231N:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "layers.py").write_text(_edited((tmp_path / "layers.py").read_text(), (
        ("    loss = -np.sum(log_probs[np.arange(N), y]) / N\n",
         "    loss = -np.sum(np.log(probs[np.arange(N), y] + 1e-7)) / N\n"),
        ("    dx[np.arange(N), y] -= 1\n    dx /= N\n", "    dx[np.arange(N), y] -= 1\n"))))
    row = grade([tmp_path / f.name for f in CS231N], resolve_convention("cs231n", None), only=["softmax_loss"],
                seed=0, configs=8).rows[0]
    dx = [f for f in row.failures if "dx: relative error" in f]
    assert len(dx) >= 4 and all("times the expected value" in f for f in dx), row.failures
    assert all(f in dx or "loss is the cross-entropy with its log guarded by 1e-7" in f for f in row.failures), \
        row.failures


def test_a_one_hot_loss_with_an_epsilon_is_told_its_layout_in_every_configuration(tmp_path):
    """UvA 2019: a one-hot loss with log(x + 1e-10) raises on the convention's labels; where its loss also misses
    on one-hot targets (the confidently wrong configuration, by its epsilon), the layout is still what is told,
    not the student's broadcasting error."""
    source = (STUDENTS / "uva" / "modules.py").read_text()
    edits = (("        out = -np.mean(np.log(x[np.arange(N), y]))\n",
              "        out = -np.sum(y * np.log(x + 1e-10)) / N\n"),
             ("        dx[np.arange(N), y] = -1.0 / (N * x[np.arange(N), y])\n",
              "        dx = -y / (N * (x + 1e-10))\n"))
    source = _edited(source, edits)
    (tmp_path / "modules.py").write_text(source)
    row = grade([tmp_path / "modules.py"], resolve_convention("uva", None), only=["softmax_cross_entropy"]).rows[0]
    assert row.passed == 0 and row.total > 6, row.failures
    assert all("takes one-hot targets, and this convention gives" in f for f in row.failures), row.failures


def test_a_later_file_that_defines_a_layer_again_is_named(tmp_path, capsys):
    """CS231n 2024's rnn_layers.py ships its own affine_forward: passed after layers.py it replaces the
    student's, which is then not graded; the load says so. A starter's ``from .layers import *`` is the same
    definition and is not named."""
    from twinnet.grader.loader import load

    (tmp_path / "layers.py").write_text("def affine_forward(x, w, b):\n    return x * w + b, None\n")
    (tmp_path / "uses.py").write_text("from layers import *\n\ndef helper():\n    return 1\n")
    (tmp_path / "rnn_layers.py").write_text("def affine_forward(x, w, b):\n    return 2 * (x * w + b), None\n")
    submission = load([tmp_path / "layers.py", tmp_path / "uses.py"])
    assert capsys.readouterr().err == "" and submission.get("affine_forward")(1.0, 2.0, 0.0)[0] == 2.0
    submission = load([tmp_path / "layers.py", tmp_path / "rnn_layers.py"])
    err = capsys.readouterr().err
    assert "rnn_layers.py defines affine_forward again" in err and "not layers.py's" in err, err
    assert submission.get("affine_forward")(1.0, 2.0, 0.0)[0] == 4.0  # the documented rule: later files win


def test_a_softmax_loss_without_the_shift_is_told_to_subtract_each_rows_largest_score(tmp_path):
    """exp of scores of size 1000 overflows: the loss fails where the scores are large, with the remedy named,
    and passes on ordinary scores."""
    source = CS231N[0].read_text()
    old = "    shifted = x - np.max(x, axis=1, keepdims=True)\n"
    assert source.count(old) == 1
    (tmp_path / "layers.py").write_text(source.replace(old, "    shifted = x\n"))
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["softmax_loss"]).rows[0]
    assert 0 < row.passed < row.total, row.failures
    assert all("subtract each row's largest score before exp" in f for f in row.failures), row.failures
    assert all("scale=1000" in f for f in row.failures), row.failures


@pytest.mark.parametrize("right, wrong, told", [
    ("    dx = dx_pad[:, :, pad:pad + H, pad:pad + W]\n", "    dx = dx_pad[:, :, pad:-pad, pad:-pad]\n",
     (" p=0", "wrong only where pad is 0", "pad:-pad")),
    ("W_out = 1 + (W + 2 * pad - WW) // stride", "W_out = 1 + (H + 2 * pad - WW) // stride",
     ("wrong only where the height and width differ", "H = W ="))])
def test_a_convolution_wrong_only_at_padding_0_or_only_off_the_square_is_told_why(tmp_path, right, wrong, told):
    """``dx_pad[:, :, pad:-pad, pad:-pad]`` is empty when pad is 0 (students in EECS 498 and CS231n): those
    configurations name the slice; the padded ones still pass. An output width computed from the height (two
    students' swapped loops, Berkeley CS182 and CMU 11-785) is right on square images only: the others say so."""
    source = CS231N[0].read_text()
    assert source.count(right) == 1
    (tmp_path / "layers.py").write_text(source.replace(right, wrong))
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["conv"], configs=6).rows[0]
    assert 0 < row.passed < row.total, row.failures
    assert all(all(s in f for s in told) for f in row.failures), row.failures


def test_a_max_pooling_wrong_only_off_the_square_is_told_why(tmp_path):
    """A pooled output whose width is computed from the height (a real CS 7643 student's allocation, H and W
    swapped) is right on square images only: the square configurations pass, and the others say so wherever the
    same windows tile a square image whole (not where the windows' height and width differ by other than a multiple
    of the stride)."""
    source = CS231N[0].read_text()
    right, wrong = "W_out = 1 + (W - pw) // stride", "W_out = 1 + (H - pw) // stride"
    assert source.count(right) == 1
    (tmp_path / "layers.py").write_text(source.replace(right, wrong))
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["maxpool"], configs=6).rows[0]
    assert 0 < row.passed < row.total, row.failures
    told = [f for f in row.failures if "wrong only where the height and width differ" in f]
    assert len(told) >= 3 and all("the same layer passes on a square image (H = W =" in f for f in told), row.failures
    untold = [f for f in row.failures if f not in told]
    assert all((cfg := dict(kv.split("=") for kv in f.split(":")[0].split()[2:]))["ph"] != cfg["pw"] or
               (int(cfg["h"]) - int(cfg["pw"])) % int(cfg["s"]) for f in untold), untold


def test_an_mlp_that_leaves_out_its_softmax_is_told_so(tmp_path):
    """CS324's MLP ends in a softmax: one that returns the last layer's scores (its training script applies the
    softmax outside) is told so, not given a bare relative error; under a spec with output = "logits" it passes."""
    for p in CS324:
        shutil.copy(p, tmp_path / p.name)
    mlp = tmp_path / "mlp_numpy.py"
    old = "        self.layers.append(SoftMax())\n"
    assert mlp.read_text().count(old) == 1
    mlp.write_text(mlp.read_text().replace(old, ""))
    files = [tmp_path / p.name for p in CS324]
    row = grade(files, resolve_convention("cs324", None), only=["mlp"]).rows[0]
    assert row.passed == 0 and row.total > 0, row.failures
    assert all("the output is the last Linear layer's scores (logits), with no softmax" in f for f in row.failures), \
        row.failures


def test_an_mlp_that_ends_in_a_softmax_where_its_course_returns_scores_is_told_so(tmp_path):
    """The reverse: a course whose MLP returns the last layer's scores (output = "logits" in a spec), given CS324's
    MLP, which ends in its softmax."""
    spec = tmp_path / "course.toml"
    spec.write_text('style = "module"\nparams = "dict"\ngrads = "overwrite"\n'
                    '[layers.linear]\nclass = "Linear"\nweight = "in_out"\nbias = "any"\n'
                    '[layers.mlp]\nclass = "MLP"\nlinear = "Linear"\noutput = "logits"\n')
    row = grade(CS324, resolve_convention(None, spec), only=["mlp"]).rows[0]
    assert row.passed == 0 and row.total > 0, row.failures
    assert all("the output is probabilities, a softmax after the last layer" in f for f in row.failures), row.failures


def test_an_elu_mlp_with_its_own_alpha_default_is_told_the_slope(tmp_path):
    """UvA 2025: MLP(n_inputs, n_hidden, n_classes, alpha=0.5) builds its ELUs at alpha 0.5, where the course's
    code (and the grader) calls MLP(n_inputs, n_hidden, n_classes) and its ELU has alpha 1: the slope is named."""
    modules = (STUDENTS / "uva" / "modules.py").read_text() + ELU_MODULE
    mlp = (STUDENTS / "uva" / "mlp_numpy.py").read_text().replace("import LinearModule, ReLUModule,",
                                                                  "import LinearModule, ELUModule,")
    edits = (("    def __init__(self, n_inputs, n_hidden, n_classes):\n",
              "    def __init__(self, n_inputs, n_hidden, n_classes, alpha=0.5):\n"),
             ("ReLUModule()", "ELUModule(alpha=alpha)"))
    mlp = _edited(mlp, edits)
    (tmp_path / "modules.py").write_text(modules)
    (tmp_path / "mlp_numpy.py").write_text(mlp)
    files = [tmp_path / "modules.py", tmp_path / "mlp_numpy.py"]
    row = grade(files, resolve_convention("uva-elu", None), only=["mlp"]).rows[0]
    hidden = [f for f in row.failures if "hidden=[]" not in f]  # with no hidden layer there is no ELU to tell
    assert row.passed < row.total and hidden, row.failures
    assert all("ELUs with alpha = 0.5, the default of MLP's own alpha argument" in f for f in hidden), row.failures
    (tmp_path / "mlp_numpy.py").write_text(mlp.replace("alpha=0.5):", "alpha=1.0):"))
    row = grade(files, resolve_convention("uva-elu", None), only=["mlp"]).rows[0]
    assert row.passed == row.total > 0, row.failures


def test_a_convolution_class_that_takes_no_padding_still_fails_its_unpadded_configurations(tmp_path):
    """The padding-0 probe builds the class with padding; a class that takes none cannot be built so, and the
    unpadded configuration's own failure stands (it is not skipped)."""
    source = (STUDENTS / "mytorch" / "layers.py").read_text()
    edits = (("    def __init__(self, in_channels, out_channels, kernel_size, stride, padding=0):\n"
              "        self.stride, self.pad = stride, padding\n",
              "    def __init__(self, in_channels, out_channels, kernel_size, stride):\n"
              "        self.stride, self.pad = stride, 0\n"),
             ("        return self.full[:, :, ::self.stride, ::self.stride]\n",
              "        return 2 * self.full[:, :, ::self.stride, ::self.stride]\n"))
    source = _edited(source, edits)
    row = _rows(_mytorch(tmp_path, source=source, only=["conv"], configs=6))["conv"]
    assert row.total > 0 and row.passed == 0 and row.skipped > 0, (row.total, row.skipped, row.failures)
    assert all(" p=0" in f and "out: relative error" in f for f in row.failures), row.failures


# the softmax's backward and the loss's as a course that does not fuse them writes them, and as one that does
UNFUSED_CS324 = (("    def forward(self, x):\n        e = np.exp(x - np.max(x, axis=1, keepdims=True))\n"
                  "        return e / np.sum(e, axis=1, keepdims=True)\n",
                  "    def forward(self, x):\n        e = np.exp(x - np.max(x, axis=1, keepdims=True))\n"
                  "        self.out = e / np.sum(e, axis=1, keepdims=True)\n        return self.out\n"),
                 ("        # softmax is fused with the cross-entropy in CrossEntropy.backward\n        return dout\n",
                  "        s = self.out\n        return s * (dout - np.sum(dout * s, axis=1, keepdims=True))\n"),
                 ("        return (x - y) / N\n", "        return -y / (x * N)\n"))
FUSED_UVA = (("        dx = y * (dout - np.sum(dout * y, axis=1, keepdims=True))\n", "        dx = dout\n"),
             ("        dx = np.zeros_like(x)\n        dx[np.arange(N), y] = -1.0 / (N * x[np.arange(N), y])\n",
              "        dx = x.copy()\n        dx[np.arange(N), y] -= 1\n        dx /= N\n"))


@pytest.mark.parametrize("convention, files, edits", [("cs324", CS324, UNFUSED_CS324), ("uva", UVA, FUSED_UVA)],
                         ids=["cs324-unfused", "uva-fused"])
def test_an_mlp_whose_softmax_and_loss_split_the_gradient_the_other_way_passes(tmp_path, convention, files, edits):
    """CS324's handout fuses the softmax into the loss's backward; a student whose softmax's backward applies its
    Jacobian, and whose loss's backward gives the gradient in the probabilities, trains as well, and the loss's row
    grades that chain as right: the MLP given the loss's gradient in the probabilities passes too. The reverse in
    UvA's course alike. A wrong MLP still fails, told as under the convention's reading."""
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "modules.py").write_text(_edited((tmp_path / "modules.py").read_text(), edits))
    paths = [tmp_path / f.name for f in files]
    rows = _rows(grade(paths, resolve_convention(convention, None), only=["softmax_cross_entropy", "mlp"]))
    assert all(r.passed == r.total > 0 for r in rows.values()), [r.failures for r in rows.values()]
    mlp = (tmp_path / "mlp_numpy.py").read_text()
    (tmp_path / "mlp_numpy.py").write_text(_edited(mlp, (("            dout = layer.backward(dout)\n",
                                                          "            dout = 2 * layer.backward(dout)\n"),)))
    row = grade(paths, resolve_convention(convention, None), only=["mlp"]).rows[0]
    assert row.passed < row.total and "dW of layer" in row.first_failure, row.failures


def _uva_loss_row(tmp_path, backward: str):
    """The UvA loss row of the reference submission with its loss's backward body replaced by ``backward``."""
    shutil.copy(UVA[1], tmp_path / UVA[1].name)
    (tmp_path / "modules.py").write_text(_edited(UVA[0].read_text(), (
        ("        dx = np.zeros_like(x)\n        dx[np.arange(N), y] = -1.0 / (N * x[np.arange(N), y])\n", backward),)))
    return grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention("uva", None),
                 only=["softmax_cross_entropy"]).rows[0]


def test_a_loss_backward_of_the_wrong_shape_is_told_as_the_losss_not_the_softmaxs(tmp_path):
    """UvA 2019: a loss's backward that returns one number, dx = -np.dot(y.T, np.diag(1 / x)), made the softmax's
    backward raise on it, and the failure named the softmax; it names the loss and the shapes."""
    row = _uva_loss_row(tmp_path, "        dx = -np.sum(1.0 / x[np.arange(N), y]) / N\n")
    assert row.passed == 0 and row.total > 6, row.failures
    assert all("CrossEntropyModule.backward returned shape (), where the gradient in the probabilities it was "
               "given has their shape, (" in f for f in row.failures), row.failures


@pytest.mark.parametrize("kind, edits, told", [
    ("sgd_momentum", (("    next_w = w + v\n", "    next_w = w - config['momentum'] * config.get('velocity', 0 * w) + "
                       "(1 + config['momentum']) * v\n"),), "the update is Nesterov's momentum"),
    ("rmsprop", (("dw / (np.sqrt(cache) + config['epsilon'])", "dw / np.sqrt(cache + config['epsilon'])"),),
     "epsilon is inside the square root"),
    ("rmsprop", (("config['decay_rate'] * config['cache'] + (1 - config['decay_rate']) * dw ** 2",
                  "(1 - config['decay_rate']) * config['cache'] + config['decay_rate'] * dw ** 2"),),
     "decay_rate is the old cache's weight"),
], ids=["nesterov", "rmsprop-eps-inside", "rmsprop-decay-swapped"])
def test_an_optimisers_known_misreadings_are_named(tmp_path, kind, edits, told):
    """iworldtong's CS231n: a Nesterov update in sgd_momentum and RMSprop's epsilon inside the square root were
    told only by their relative errors; each misreading is named wherever its first step shows it."""
    (tmp_path / "optim.py").write_text(_edited((STUDENTS / "cs231n" / "optim.py").read_text(), edits))
    row = grade([tmp_path / "optim.py"], resolve_convention("cs231n", None), only=[kind]).rows[0]
    assert row.passed < row.total and told in row.first_failure, row.failures
    assert all(told in f or "relative error" in f for f in row.failures), row.failures


def test_a_params_dict_with_the_students_own_keys_is_graded_through_a_spec(tmp_path):
    """UvA 2020 (JMitnik): params['weights'] where the handout says 'weight'. A spec's dotted path reaches into
    the dict's key, params.weights, as it reaches into a member; the same files fail under the built-in names."""
    (tmp_path / "modules.py").write_text((STUDENTS / "uva" / "modules.py").read_text().replace("'weight'",
                                                                                              "'weights'"))
    shutil.copy(UVA[1], tmp_path / "mlp_numpy.py")
    spec = tmp_path / "uva2020.toml"
    spec.write_text('style = "module"\nparams = "dict"\ngrads = "overwrite"\n[layers.linear]\nclass = "LinearModule"\n'
                    'weight = "any"\nbias = "any"\nparams = {weight = "params.weights", bias = "params.bias"}\n'
                    'grads = {weight = "grads.weights", bias = "grads.bias"}\n'
                    '[layers.mlp]\nclass = "MLP"\nlinear = "LinearModule"\noutput = "probabilities"\n')
    files = [tmp_path / "modules.py", tmp_path / "mlp_numpy.py"]
    rows = _rows(grade(files, resolve_convention(None, spec)))
    assert all(r.passed == r.total > 0 for r in rows.values()), [r.failures for r in rows.values()]
    row = grade(files, resolve_convention("uva", None), only=["linear"]).rows[0]
    assert row.passed == 0 and "no parameter 'weight'" in row.first_failure, row.failures


@pytest.mark.parametrize("convention, files, edits", [("cs324", CS324, UNFUSED_CS324[:2]), ("uva", UVA, FUSED_UVA[:1])],
                         ids=["cs324-jacobian-softmax-fused-loss", "uva-passthrough-softmax-unfused-loss"])
def test_an_mlp_whose_softmax_splits_the_gradient_one_way_and_its_loss_the_other_fails(tmp_path, convention, files,
                                                                                      edits):
    """The other reading is the student's only where their own loss's backward gives that gradient: a softmax
    that applies its Jacobian beside the handout's fused loss (or passes the gradient through beside a loss that
    gives it in the probabilities) trains wrongly in the student's own loop, and fails the MLP as the loss row."""
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "modules.py").write_text(_edited((tmp_path / "modules.py").read_text(), edits))
    rows = _rows(grade([tmp_path / f.name for f in files], resolve_convention(convention, None),
                       only=["softmax_cross_entropy", "mlp"]))
    assert rows["softmax_cross_entropy"].passed < rows["softmax_cross_entropy"].total
    assert rows["mlp"].passed < rows["mlp"].total and "dW of layer" in rows["mlp"].first_failure, rows["mlp"].failures


def test_a_loss_backward_that_divides_the_one_hot_targets_by_zero_probabilities_is_told_so(tmp_path):
    """UvA 2025: dx = -(one_hot(y) / x) / N is the textbook formula, and 0 / 0 where a class that is not the label
    has probability exactly 0 (logits of size 1000): told as the loss's, with the fix, not a bare "dx is not
    finite"; dividing at the labels only passes there."""
    row = _uva_loss_row(tmp_path, "        dx = -(np.eye(x.shape[1])[y] / x) / N\n")
    (failure,) = row.failures
    told = "gradient is not finite where a class that is not the label"
    assert "scale=1000.0: CrossEntropyModule.backward's " + told + " " \
           "has probability exactly 0" in failure and "dx[np.arange(N), y] = -1 / (N * p[np.arange(N), y])" in failure
    assert "its loss is" not in failure  # its forward reads the labels' probabilities: finite
    shutil.copy(UVA[1], tmp_path / UVA[1].name)  # a forward that reads every class's log too: nan, told at once
    (tmp_path / "modules.py").write_text(_edited(UVA[0].read_text(), (
        ("        dx = np.zeros_like(x)\n        dx[np.arange(N), y] = -1.0 / (N * x[np.arange(N), y])\n",
         "        dx = -(np.eye(x.shape[1])[y] / x) / N\n"),
        ("        out = -np.mean(np.log(x[np.arange(N), y]))\n",
         "        out = -np.sum(np.eye(x.shape[1])[y] * np.log(x)) / N\n"))))
    row = grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"], resolve_convention("uva", None),
                only=["softmax_cross_entropy"]).rows[0]
    (failure,) = row.failures
    assert told in failure and "its loss is nan there too (0 * log(0))" in failure, failure
    # a course whose loss's backward is the sum's gradient (grad = "sum"): the fix told without the 1 / N
    (tmp_path / "modules.py").write_text(_edited(UVA[0].read_text(), (
        ("        dx = np.zeros_like(x)\n        dx[np.arange(N), y] = -1.0 / (N * x[np.arange(N), y])\n",
         "        dx = -(np.eye(x.shape[1])[y] / x)\n"),)))
    (tmp_path / "uva-sum.toml").write_text('base = "uva"\n[layers.softmax_cross_entropy]\ngrad = "sum"\n')
    row = grade([tmp_path / "modules.py", tmp_path / "mlp_numpy.py"],
                resolve_convention(None, tmp_path / "uva-sum.toml"), only=["softmax_cross_entropy"]).rows[0]
    (failure,) = row.failures
    assert told in failure and "dx[np.arange(N), y] = -1 / p[np.arange(N), y], the other" in failure, failure
    # not finite at the labels themselves (or everywhere): not that 0 / 0, and not told as it
    at_labels = "        dx = np.zeros_like(x)\n        dx[np.arange(N), y] = -1.0 / (N * x[np.arange(N), y] * 0)\n"
    for backward in (at_labels, "        dx = np.full_like(x, np.nan)\n"):
        row = _uva_loss_row(tmp_path, backward)
        assert row.passed == 0 and not any(told in f for f in row.failures), row.failures


def test_numpy_1_era_and_unfinished_code_get_their_hints(tmp_path):
    """A (1, 1) product stored in one element (CS231n 2019's convolution, right under NumPy 1) and a starter's
    out = None left unfilled (out.astype(...) after the TODO) each say what they are."""
    source = (STUDENTS / "cs231n" / "layers.py").read_text()
    (tmp_path / "layers.py").write_text(source + (
        "\n\ndef affine_forward(x, w, b):\n    out = np.zeros((x.shape[0], w.shape[1]))\n"
        "    for i in range(x.shape[0]):\n        for j in range(w.shape[1]):\n"
        "            out[i, j] = x[i:i + 1].reshape(1, -1) @ w[:, j:j + 1] + b[j]\n    return out, (x, w, b)\n"
        "\n\ndef relu_forward(x):\n    out = None\n    return out.astype(x.dtype), x\n"
        "\n\ndef max_pool_forward_naive(x, pool_param):\n    return np.array([[1.0, 2.0], [3.0]]), None\n"))
    rows = _rows(grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["linear", "relu", "maxpool"],
                       configs=1))
    try:
        z = np.zeros(1)
        z[0] = np.ones((1, 1))
        refused = False  # NumPy 1: stored, with a warning
    except ValueError:
        refused = True
    if refused:
        assert "setting an array element with a sequence" in rows["linear"].first_failure
        assert "NumPy 1 did; code of that era needs its value, a.item(); or grade it under NumPy 1" in \
            rows["linear"].first_failure
    assert "inhomogeneous" in rows["maxpool"].first_failure and "NumPy 1" not in rows["maxpool"].first_failure
    assert "'NoneType' object has no attribute 'astype' (a value still None: a starter's placeholder, such as " \
           "out = None, left unfilled?)" in rows["relu"].first_failure, rows["relu"].failures


def test_grades_finished_together_with_an_interruption_are_all_kept(tmp_path, monkeypatch):
    """Where a student's grade and another's interruption finish in one wait, the grade is written to the CSV
    before the interruption is raised, whatever order the finished set iterates in (it had been lost at random)."""
    import concurrent.futures as futures

    from twinnet.grader import Report, Row
    from twinnet.grader.each import grade_each

    real_wait = futures.wait
    monkeypatch.setattr(futures, "wait", lambda fs, return_when: real_wait(fs, return_when=futures.ALL_COMPLETED))
    root = _class(tmp_path / "submissions")

    def grade(paths, convention, **kwargs):  # every student but the first is interrupted
        if "alice" not in str(paths[0]):
            raise KeyboardInterrupt
        return Report("cs231n", 0, [str(p) for p in paths], [Row("linear", "linear (affine)", 1, 1, 0.0, None, [], 1.0)])

    for attempt in range(5):  # the finished set's order follows the futures' ids, so try several
        out_csv = tmp_path / f"grades{attempt}.csv"
        with pytest.raises(KeyboardInterrupt):
            grade_each(root, [Path("layers.py"), Path("optim.py")], resolve_convention("cs231n", None),
                       only=["linear"], seed=0, configs=1, csv_path=out_csv, grade=grade, jobs=3)
        assert out_csv.read_text().splitlines()[1].startswith("alice,1.0,1.0,True,")


def test_a_batch_norm_backward_that_leaves_eps_out_is_told_so(tmp_path):
    """Berkeley CS182 2021: a backward that divides by sqrt(var), where the forward divided by sqrt(var + eps), is
    off by a relative 1e-2 at small batches; the failure names eps rather than a bare relative error."""
    unchanged = "    x_hat, gamma, std = cache\n    N = dout.shape[0]\n"
    no_eps = ("    x_hat, gamma, std = cache\n    N = dout.shape[0]\n    centred = x_hat * std\n"
              "    std = np.sqrt((centred ** 2).mean(axis=0))\n    x_hat = centred / std\n")
    (tmp_path / "layers.py").write_text(_edited(CS231N[0].read_text(), ((unchanged, no_eps),)))
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["batchnorm"]).rows[0]
    assert row.passed < row.total and "dx is batch norm's gradient without eps" in row.first_failure, row.failures
    right = grade([CS231N[0]], resolve_convention("cs231n", None), only=["batchnorm"]).rows[0]
    assert right.passed == right.total > 0
    # a forward without eps too: its out is what is wrong, and told so, not its backward
    both = _edited((tmp_path / "layers.py").read_text(),
                   (("        std = np.sqrt(var + eps)\n", "        std = np.sqrt(var)\n"),))
    (tmp_path / "layers.py").write_text(both)
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["batchnorm"]).rows[0]
    assert row.passed < row.total and not any("without eps" in f for f in row.failures), row.failures


@pytest.mark.parametrize("seed", [0, 1, 6])
def test_a_relu_backward_masked_by_the_gradients_sign_fails_every_configuration(tmp_path, seed):
    """deeplearning.ai's helper as one student had it, dZ[dZ <= 0] = 0: right wherever the gradient's signs happen to
    agree with the input's, as they often do on tiny shapes; every configuration holds one place where they do not."""
    source = _edited(CS231N[0].read_text(), (("    dx = dout * (x > 0)\n", "    dx = dout * (dout > 0)\n"),))
    (tmp_path / "layers.py").write_text(source)
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["relu"], seed=seed).rows[0]
    assert row.total > 0 and row.passed == 0 and row.points == 0, row.failures


def test_a_functional_loss_that_returns_none_is_told_so_on_huge_logits_too(tmp_path):
    """The logits of size 1000 test for overflow; a loss left None is told as None there, not as an overflow."""
    softmax = "    dx[np.arange(N), y] -= 1\n    dx /= N\n    return {}, dx\n"  # softmax_loss's end
    source = _edited(CS231N[0].read_text(), ((softmax.format("loss"), softmax.format("None")),))
    (tmp_path / "layers.py").write_text(source)
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["softmax_loss"]).rows[0]
    assert row.passed == 0 and all("loss is None" in f and "overflow" not in f for f in row.failures), row.failures


CS7643_SPEC = '''name = "cs7643"
style = "module"
[layers.linear]
class = "Linear"
args = ["in_features", "out_features"]
weight = "in_out"
params = {weight = "weight", bias = "bias"}
grads = {weight = "dw", bias = "db"}
dx = "dx"
[layers.relu]
class = "ReLU"
dx = "dx"
[layers.conv]
class = "Conv2D"
params = {weight = "weight", bias = "bias"}
grads = {weight = "dw", bias = "db"}
dx = "dx"
[layers.maxpool]
class = "MaxPooling"
dx = "dx"
[layers.softmax_cross_entropy]
loss = "SoftmaxCrossEntropy"
backward = "nothing"
loss_item = 1
dx = "dx"
'''


@pytest.mark.parametrize("bug", [None, "relu", "conv-dx", "pool-dx", "loss-mean", "dx-unset", "dx-buffer"])
def test_cs7643_modules_whose_backward_returns_nothing_are_graded_from_a_spec(bug, tmp_path):
    """Georgia Tech CS 7643's modules: backward returns nothing and keeps self.dx (dx = "dx"), the loss's forward
    returns (probs, loss) (loss_item = 1). The stand-in passes every layer; a wrong gradient kept in self.dx fails
    that layer alone, and a backward that leaves self.dx None is told so."""
    changes = {"relu": ("self.dx = dout * (self.cache > 0)", "self.dx = np.maximum(dout, 0) * (self.cache > 0)"),
               "conv-dx": ("self.dx = dpad[:, :, p:p + x.shape[2], p:p + x.shape[3]]",
                           "self.dx = dpad[:, :, p:p + x.shape[2], p:p + x.shape[3]] * 2"),
               "pool-dx": ("self.dx[:, :, i * s:i * s + k, j * s:j * s + k] += ",
                           "self.dx[:, :, i * s:i * s + k, j * s:j * s + k] = "),
               "loss-mean": ("self.dx = dx / len(y)", "self.dx = dx"),
               "dx-unset": ("self.dx = dout * (self.cache > 0)", "return dout * (self.cache > 0)"),
               # right, the gradient written into the array kept from the backward before: read as a copy
               "dx-buffer": ("self.dx = dpad[:, :, p:p + x.shape[2], p:p + x.shape[3]]",
                             "if self.dx is None or self.dx.shape != x.shape:\n            self.dx = np.empty_like(x)\n"
                             "        self.dx[...] = dpad[:, :, p:p + x.shape[2], p:p + x.shape[3]]")}
    _planted(STUDENTS / "cs7643" / "modules.py", changes, bug, tmp_path / "modules.py")
    (tmp_path / "spec.toml").write_text(CS7643_SPEC)
    report = grade([tmp_path / "modules.py"], resolve_convention(None, tmp_path / "spec.toml"), configs=3)
    rows = {r.kind: r for r in report.rows}
    assert set(rows) == {"linear", "relu", "conv", "maxpool", "softmax_cross_entropy"}
    failing = {"relu": "relu", "conv-dx": "conv", "pool-dx": "maxpool", "loss-mean": "softmax_cross_entropy",
               "dx-unset": "relu"}.get(bug)
    for kind, row in rows.items():
        assert row.total > 0 and (row.passed == row.total) == (kind != failing), (kind, row.failures)
    if bug == "dx-unset":
        assert 'ReLU.backward left dx None: it should hold the gradient with respect to the input (dx = "dx")' \
            in rows["relu"].first_failure


def test_a_backward_that_returns_nothing_and_a_loss_returning_a_tuple_are_told_the_spec_keys(tmp_path):
    """Without dx and loss_item, CS 7643's modules fail, each told the key that grades its course's convention;
    with dx naming an attribute the layer lacks, that is told."""
    spec = "\n".join(line for line in CS7643_SPEC.splitlines() if not line.startswith(("dx", "loss_item")))
    (tmp_path / "spec.toml").write_text(spec)
    shutil.copy(STUDENTS / "cs7643" / "modules.py", tmp_path / "modules.py")
    report = grade([tmp_path / "modules.py"], resolve_convention(None, tmp_path / "spec.toml"), configs=1)
    rows = {r.kind: r for r in report.rows}
    for kind in ("linear", "relu", "conv", "maxpool"):
        assert rows[kind].passed == 0
        assert 'returned None, and keeps an array in self.dx' in rows[kind].first_failure
        assert 'dx = "dx" in a spec' in rows[kind].first_failure
    assert rows["softmax_cross_entropy"].passed == 0
    assert "returned a tuple of 2, its item 1 a number" in rows["softmax_cross_entropy"].first_failure
    assert "loss_item = 1 in a spec" in rows["softmax_cross_entropy"].first_failure
    (tmp_path / "spec.toml").write_text(CS7643_SPEC.replace('[layers.relu]\nclass = "ReLU"\ndx = "dx"',
                                                            '[layers.relu]\nclass = "ReLU"\ndx = "grad.x"'))
    relu = grade([tmp_path / "modules.py"], resolve_convention(None, tmp_path / "spec.toml"), only=["relu"],
                 configs=1).rows[0]
    assert relu.passed == 0 and "ReLU.backward kept no grad.x" in relu.first_failure
    # loss_item = 1 given a forward returning (loss, probs), or the loss alone: told which
    (tmp_path / "spec.toml").write_text(CS7643_SPEC)
    source = (tmp_path / "modules.py").read_text()
    for returned, told in (("return loss, probs", "is not a number, and its item 0 is: the loss is there (loss_item = "
                                                  "0)"),
                           ("return loss", "a forward that returns the loss alone needs no loss_item")):
        (tmp_path / "modules.py").write_text(source.replace("return probs, loss", returned))
        row = grade([tmp_path / "modules.py"], resolve_convention(None, tmp_path / "spec.toml"),
                    only=["softmax_cross_entropy"], configs=1).rows[0]
        assert row.passed == 0 and told in row.first_failure, row.first_failure


DLAI_CNN_SPEC = '''name = "dlai-cnn"
style = "functional"
[layers.conv]
forward = "conv_forward"
backward = "conv_backward"
images = "nhwc"
[layers.maxpool]
forward = "pool_forward"
backward = "pool_backward"
images = "nhwc"
'''


@pytest.mark.parametrize("bug", [None, "conv-dw", "conv-stride", "pool-assign", "pad-slice"])
def test_deeplearning_ais_convolution_on_images_last_channel_is_graded_from_a_spec(bug, tmp_path):
    """deeplearning.ai's "convolution model step by step": (m, H, W, C) images, (f, f, C, F) filters, a (1, 1, 1, F)
    bias, hyperparameters {"stride", "pad"} and {"f", "stride"} (images = "nhwc"). The stand-in passes both layers; a
    wrong filter gradient, a stride ignored in the backward, or a pooling backward that assigns each window's
    gradient where windows overlap fails that layer alone, the last told as such."""
    changes = {"conv-dw": ("dW += np.tensordot", "dW = np.tensordot"),
               "conv-stride": ("rows, cols = slice(h * stride, h * stride + f), slice(w * stride, w * stride + f)\n"
                               "            dpadded",
                               "rows, cols = slice(h, h + f), slice(w, w + f)\n            dpadded"),
               "pool-assign": ("dA_prev[:, rows, cols, :] += mask", "dA_prev[:, rows, cols, :] = mask"),
               "pad-slice": ("dpadded[:, pad:pad + A_prev.shape[1], pad:pad + A_prev.shape[2], :]",
                             "dpadded[:, pad:-pad, pad:-pad, :]")}
    _planted(STUDENTS / "dlai" / "cnn_layers.py", changes, bug, tmp_path / "cnn_layers.py")
    (tmp_path / "spec.toml").write_text(DLAI_CNN_SPEC)
    rows = _rows(grade([tmp_path / "cnn_layers.py"], resolve_convention(None, tmp_path / "spec.toml"), configs=4))
    failing = {"conv-dw": "conv", "conv-stride": "conv", "pool-assign": "maxpool", "pad-slice": "conv"}.get(bug)
    for kind, row in rows.items():
        assert row.total > 0 and (row.passed == row.total) == (kind != failing), (kind, row.failures)
    assert rows["maxpool"].skipped > 0  # windows of another height than width: the course's f cannot give them
    if bug == "pool-assign":
        assert any("add each window's" in f for f in rows["maxpool"].failures), rows["maxpool"].failures
    if bug == "pad-slice":  # the slice named in the course's layout
        assert any("wrong only where pad is 0" in f and "[:, pad:-pad, pad:-pad, :]" in f
                   for f in rows["conv"].failures), rows["conv"].failures


def test_a_layer_on_images_last_channel_under_a_convention_of_channels_first_is_told_the_setting(tmp_path):
    """deeplearning.ai's layers graded as CS231n's (N, C, H, W) layout: each row says that they take (N, H, W, C)
    images and names images = "nhwc"; a CS231n convolution is not told so."""
    (tmp_path / "spec.toml").write_text(DLAI_CNN_SPEC.replace('images = "nhwc"\n', ""))
    rows = _rows(grade([STUDENTS / "dlai" / "cnn_layers.py"], resolve_convention(None, tmp_path / "spec.toml"),
                       configs=1))
    for kind in ("conv", "maxpool"):
        assert rows[kind].passed == 0
        assert 'takes (N, H, W, C) images' in rows[kind].first_failure
        assert 'images = "nhwc" in a spec' in rows[kind].first_failure
    assert "(k, k, C, F) filters" in rows["conv"].first_failure
    assert rows["maxpool"].skipped == 0  # a window the other layout cannot give leaves this one's verdict standing
    # the course's own advice, float() of one channel's (1, 1, 1) bias, raises on NumPy 2 in either layout: the
    # layout is still told, with what the file then raised
    source = (STUDENTS / "dlai" / "cnn_layers.py").read_text()
    line = "Z[:, h, w, :] = np.tensordot(window, W, axes=([1, 2, 3], [0, 1, 2])) + b[0, 0, 0]"
    assert line in source
    (tmp_path / "cnn_layers.py").write_text(source.replace(line, (
        "for c in range(n_C):\n                Z[:, h, w, c] = np.tensordot(window, W[..., c], axes=([1, 2, 3], "
        "[0, 1, 2])) + float(b[:, :, :, c])")))
    try:
        float(np.ones((1, 1, 1)))
        refused = False  # NumPy 1: a number, with a warning; the file is right, as its course ran it
    except TypeError:
        refused = True
    for spec, told in ((DLAI_CNN_SPEC.replace('images = "nhwc"\n', ""), True), (DLAI_CNN_SPEC, False)):
        (tmp_path / "spec.toml").write_text(spec)
        row = grade([tmp_path / "cnn_layers.py"], resolve_convention(None, tmp_path / "spec.toml"), only=["conv"],
                    configs=1).rows[0]
        assert ('images = "nhwc" in a spec' in (row.first_failure or "")) == told, row.first_failure
        if refused:
            assert row.passed == 0 and "an index to it, such as b[0, 0, 0, c]" in row.first_failure
            assert 'or grade it under NumPy 1, as its course ran it: pip install "numpy<2"' in row.first_failure
        else:
            assert row.passed == 0 if told else row.passed == row.total, row.failures
    source = (STUDENTS / "cs231n" / "layers.py").read_text()
    assert "db = np.sum(dout, axis=(0, 2, 3))" in source
    (tmp_path / "layers.py").write_text(source.replace("db = np.sum(dout, axis=(0, 2, 3))",
                                                       "db = np.sum(dout, axis=(0, 2, 3)) * 2"))
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["conv"], configs=1).rows[0]
    assert row.passed == 0 and "db" in row.first_failure and "nhwc" not in row.first_failure
    # a CS231n convolution that reads each filter's bias as float(b[f]) and slices x, not x_pad (a broadcast error
    # where pad > 0): given (N, H, W, C) images it stops at float() of a (1, 1, 1) array, and is still not told so
    planted = source.replace("            for i in range(H_out):\n                for j in range(W_out):\n"
                             "                    hs = i * stride\n                    ws = j * stride\n"
                             "                    window = x_pad[n, :, hs:hs + HH, ws:ws + WW]\n"
                             "                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]",
                             "            bias = float(b[f])\n            for i in range(H_out):\n"
                             "                for j in range(W_out):\n                    hs = i * stride\n"
                             "                    ws = j * stride\n"
                             "                    window = x[n, :, hs:hs + HH, ws:ws + WW]\n"
                             "                    out[n, f, i, j] = np.sum(window * w[f]) + bias", 1)
    assert planted != source
    (tmp_path / "layers.py").write_text(planted)
    row = grade([tmp_path / "layers.py"], resolve_convention("cs231n", None), only=["conv"], configs=1).rows[0]
    assert 0 < row.passed < row.total and "nhwc" not in " ".join(row.failures), row.failures
    assert any("raised ValueError: operands could not be broadcast" in f for f in row.failures), row.failures


def test_a_layer_that_never_ends_given_the_other_layout_is_stopped_once_and_told_where(tmp_path, monkeypatch):
    """A convolution that fails at once on (N, C, H, W) images and loops forever given (N, H, W, C) ones (the layout
    probe): the time limit ends the row at its first configuration, as any probe's does, and the message says that
    it ran so long given the other layout, with what it raised given this one."""
    from twinnet.grader import loader

    monkeypatch.setattr(loader, "CALL_LIMIT_S", 2.0)  # far above what the calls that end take, even on a busy machine
    loop = _planted(STUDENTS / "dlai" / "cnn_layers.py", {"loop": ("    for h in range(n_H):\n        for w in "
                                                                   "range(n_W):\n            window = padded",
                                                                   "    h = 0\n    while h < n_H:\n        for w in "
                                                                   "range(n_W):\n            window = padded")},
                    "loop", tmp_path / "cnn_layers.py")
    (tmp_path / "spec.toml").write_text(DLAI_CNN_SPEC.replace('images = "nhwc"\n', ""))
    row = grade([loop], resolve_convention(None, tmp_path / "spec.toml"), only=["conv"], configs=2).rows[0]
    assert row.passed == 0 and row.total > 1
    assert "ran for more than 2 s given (N, H, W, C) images" in row.failures[0], row.failures[0]
    assert "given (N, C, H, W): conv_forward raised ValueError" in row.failures[0], row.failures[0]
    assert all("not run, as #0 ran past the time limit" in f for f in row.failures[1:]), row.failures
