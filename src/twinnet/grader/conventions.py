"""Conventions: how a course names its layers, calls them and lays out their weights.

A convention is plain data (what a ``--spec`` TOML file holds), read by the checks in
``twinnet.grader.kinds``. ``style`` says how layers are called:

- ``functional`` (CS231n): ``forward(x, *weights, param) -> (out, cache)`` and
  ``backward(dout, cache) -> (dx, *dweights)``; the grader passes the weights.
- ``module`` (UvA, CS324, torch-like): a class built with the layer's sizes, ``forward(x)`` and
  ``backward(dout) -> dx``; its weights are in ``params``/``grads`` dicts (``params = "dict"``) or
  are ``Parameter``-like attributes with ``.data`` and ``.grad`` (``params = "attributes"``,
  ``twinnet.numpy_nn``'s own protocol); ``grads`` says whether backward overwrites them or adds
  to them (torch's ``accumulate``), and a layer's ``accumulate = true`` or ``false`` that of its own (CMU's
  RNN cell adds up what its linear layer and GRU cell overwrite). A layer's own ``params``/``grads`` tables name
  plain attributes instead (``params = {weight = "W", bias = "b"}``, CMU's mytorch; dotted paths reach into
  members, and into a dict's keys, ``params.weights``, and a list's entries by their places, ``params.0``: Deep
  Learning from Scratch 2's; an RNN cell's names its ``weight_ih``, ``weight_hh`` and ``bias``, or ``bias_ih`` and ``bias_hh``),
  ``args`` the class's arguments where it takes fewer (``kinds.ARGUMENTS``), ``derivative = true`` an
  activation whose ``backward()`` returns d out / d x, ``dx = "dx"`` a layer whose backward returns nothing and
  keeps the input's gradient in that attribute, and ``loss_item = 1`` a loss whose forward returns a tuple with
  the loss at that place (Georgia Tech CS 7643's modules: ``self.dx``, ``(probs, loss)``).

Each entry of ``layers`` names one layer kind's functions or class and the layout facts that
differ between courses (``weight``: ``in_out``, ``out_in`` or ``any``; ``bias``: ``flat`` (M,), ``row``
(1, M), ``column`` (M, 1) or ``any``; ``any``: whichever the student's module-style layer created); batch norm's ``running_var`` (``biased``/``unbiased``) and ``momentum`` meaning (``keep``:
the old statistics' weight, CS231n; ``update``: the new batch's, torch); the loss's ``input``
(``logits``/``probabilities``), ``target`` (``labels``/``one_hot``), ``reduction`` and ``grad`` (the reduction
its backward's gradient is of, where it differs: CMU 11-785's 2022 loss returns the mean and the sum's gradient);
the pointwise losses' (``mse_loss``, ``l1_loss``, ``bce_loss``) ``dims`` (1: (N,) vectors, TUM I2DL's; 2: (N, C)
arrays, the default) and, for ``bce_loss``, ``input`` (``probabilities``, the default, or ``logits``);
dropout's ``p`` (``keep``: the keep probability, CS231n since 2018; ``drop``: the drop probability, its 2016-17
starter code) and ``inverted`` (false: training keeps x as it is, test mode scales by keep, the book's); Adam's ``first_t`` (the bias correction's t at the first step: 1, as the paper and torch; 2,
CS231n's 2017 starter, whose ``config['t']`` starts at 1 and is incremented before use; its Winter 2016 starter
starts it at 0); a functional ``conv``'s and ``maxpool``'s ``images`` (``nchw``, CS231n's (N, C, H, W) with (F, C, k, k)
filters, or ``nhwc``, deeplearning.ai's (m, H, W, C) with (f, f, C, F) filters, a (1, 1, 1, F) bias and pooling's
``{"f", "stride"}``).

A spec may start from a built-in convention, ``base = "cs231n"``, and give only what differs: its top-level
settings replace the base's, and each of its layer tables is laid over the base's table of that kind.

An entry with ``optional = true`` is a layer some years of the course did not have: a submission that
defines none of its functions gets a row marked not submitted, worth 0 of 0 points and outside the verdict;
one that defines some of them is graded (the missing ones fail it), and ``--only KIND`` makes it required.
CS231n's dropout, layer norm, spatial batch and group norm, word embedding, the SVM loss and the recurrent
layers are optional. An entry with ``graded = false`` is a layer the course gives rather than the student
writes (CS231n's 2016-18 ``softmax_loss``, in ``layers.py`` beside the student's): left out of the grading,
unless ``--only KIND`` names it.
"""

from __future__ import annotations

import os
import tomllib
from itertools import permutations
from pathlib import Path
from typing import Any

from twinnet import TwinnetError

CS231N: dict[str, Any] = {
    "name": "cs231n",
    "style": "functional",
    "layers": {
        "linear": {"forward": "affine_forward", "backward": "affine_backward", "weight": "in_out"},
        "relu": {"forward": "relu_forward", "backward": "relu_backward"},
        "dropout": {"forward": "dropout_forward", "backward": "dropout_backward", "p": "keep", "optional": True},
        "conv": {"forward": "conv_forward_naive", "backward": "conv_backward_naive"},
        "maxpool": {"forward": "max_pool_forward_naive", "backward": "max_pool_backward_naive"},
        "batchnorm": {"forward": "batchnorm_forward", "backward": "batchnorm_backward", "running_var": "biased",
                      "momentum": "keep"},
        # the assignment's second, simplified backward: its gradients graded as the first's (with the same forward)
        "batchnorm_alt": {"forward": "batchnorm_forward", "backward": "batchnorm_backward_alt", "running_var": "biased",
                          "momentum": "keep", "optional": True},
        "spatial_batchnorm": {"forward": "spatial_batchnorm_forward", "backward": "spatial_batchnorm_backward",
                              "running_var": "biased", "momentum": "keep", "optional": True},
        "layernorm": {"forward": "layernorm_forward", "backward": "layernorm_backward", "optional": True},
        "spatial_groupnorm": {"forward": "spatial_groupnorm_forward", "backward": "spatial_groupnorm_backward",
                              "optional": True},
        "softmax_loss": {"function": "softmax_loss"},
        # optional: since 2025 the course's assignment 1 has no SVM, and 2026's layers.py no svm_loss
        "svm_loss": {"function": "svm_loss", "optional": True},
        # optional since 2025, when the course moved its RNN layers to PyTorch (rnn_layers_pytorch.py, forward only)
        "rnn_step": {"forward": "rnn_step_forward", "backward": "rnn_step_backward", "optional": True},
        "rnn": {"forward": "rnn_forward", "backward": "rnn_backward", "optional": True},
        "lstm_step": {"forward": "lstm_step_forward", "backward": "lstm_step_backward", "gates": "ifog",
                      "optional": True},
        "lstm": {"forward": "lstm_forward", "backward": "lstm_backward", "gates": "ifog", "optional": True},
        "word_embedding": {"forward": "word_embedding_forward", "backward": "word_embedding_backward",
                           "optional": True},
        "sgd_momentum": {"function": "sgd_momentum"},
        "rmsprop": {"function": "rmsprop"},
        "adam": {"function": "adam"},
        # classifiers/fc_net.py's network (assignment 1's TwoLayerNet: class = "TwoLayerNet" in a spec), and cnn.py's
        "mlp": {"class": "FullyConnectedNet", "optional": True},
        "convnet": {"class": "ThreeLayerConvNet", "optional": True},
    },
}

UVA: dict[str, Any] = {
    "name": "uva",
    "style": "module",
    "params": "dict",
    "grads": "overwrite",
    "layers": {
        # the students create the parameters themselves, and the course's own tests leave the layouts open: the
        # weight (out, in) since 2020, often (in, out) in 2018-19; the bias (out,), (1, out) or (out, 1)
        "linear": {"class": "LinearModule", "weight": "any", "bias": "any"},
        "relu": {"class": "ReLUModule"},
        "softmax_cross_entropy": {"softmax": "SoftMaxModule", "loss": "CrossEntropyModule", "input": "probabilities",
                                  "target": "labels", "reduction": "mean", "fused": False},
        "mlp": {"class": "MLP", "linear": "LinearModule", "output": "probabilities"},
    },
}

CS324: dict[str, Any] = {
    "name": "cs324",
    "style": "module",
    "params": "dict",
    "grads": "overwrite",
    "layers": {
        # the handout fixes the weight's layout, (in, out), not the bias's: students write (out,) or (1, out)
        "linear": {"class": "Linear", "weight": "in_out", "bias": "any"},
        "relu": {"class": "ReLU"},
        "softmax_cross_entropy": {"softmax": "SoftMax", "loss": "CrossEntropy", "input": "probabilities",
                                  "target": "one_hot", "reduction": "mean", "fused": True},
        "mlp": {"class": "MLP", "linear": "Linear", "output": "probabilities", "fused": True},
    },
}

TORCH: dict[str, Any] = {
    "name": "torch",
    "style": "module",
    "params": "attributes",
    "grads": "accumulate",
    "layers": {
        "linear": {"class": "Linear", "weight": "out_in", "bias": "flat"},
        "relu": {"class": "ReLU"},
        "conv": {"class": "Conv2d"},
        "maxpool": {"class": "MaxPool2d"},
        "batchnorm": {"class": "BatchNorm1d", "running_var": "unbiased", "momentum": "update"},
        "softmax_cross_entropy": {"loss": "CrossEntropyLoss", "input": "logits", "target": "labels",
                                  "reduction": "mean"},
    },
}

def _uva_activation(name: str, kind: str, cls: str, target: str = "labels") -> dict[str, Any]:
    """UvA's convention with another activation where ReLU was: the layer ``kind`` as the class ``cls``, and an
    MLP of it; the loss's targets as that year's data gave them."""
    return {**UVA, "name": name, "layers": {
        "linear": UVA["layers"]["linear"],
        kind: {"class": cls},
        "softmax_cross_entropy": {**UVA["layers"]["softmax_cross_entropy"], "target": target},
        "mlp": {**UVA["layers"]["mlp"], "activation": kind},
    }}


# UvA's course from 2022: ELU (alpha 1) where ReLU was
UVA_ELU = _uva_activation("uva-elu", "elu", "ELUModule")
# UvA's course in 2019: LeakyReLUModule(neg_slope) where ReLU was, MLP(n_inputs, n_hidden, n_classes, neg_slope),
# and one-hot targets (that year's cifar10_utils gave its labels one-hot)
UVA_LEAKY = _uva_activation("uva-leaky", "leaky_relu", "LeakyReLUModule", target="one_hot")

# Michigan's EECS 498-007 / 598-005 (Deep Learning for Computer Vision), assignment 3: CS231n's functional layers
# as static methods of classes (``Linear.forward(x, w, b)``), on torch tensors; dropout's p is the drop
# probability; the course gives softmax_loss itself (a3_helper.py: pass it with the files)
_EECS498_CLASSES = {"linear": "Linear", "relu": "ReLU", "dropout": "Dropout", "conv": "Conv", "maxpool": "MaxPool",
                    "batchnorm": "BatchNorm", "spatial_batchnorm": "SpatialBatchNorm"}
_EECS498_DIFFERS = {"dropout": {"p": "drop"}, "batchnorm": {"optional": True}, "sgd_momentum": {"optional": True},
                    "rmsprop": {"optional": True}, "adam": {"optional": True}}
EECS498: dict[str, Any] = {
    "name": "eecs498",
    "style": "functional",
    "arrays": "torch",
    "layers": {**{kind: {**CS231N["layers"][kind],
                         **({step: f"{_EECS498_CLASSES[kind]}.{step}" for step in ("forward", "backward")}
                            if kind in _EECS498_CLASSES else {}),
                         **_EECS498_DIFFERS.get(kind, {})}
                  for kind in (*_EECS498_CLASSES, "sgd_momentum", "rmsprop", "adam")},
               # BatchNorm's second backward, as CS231n's batchnorm_backward_alt
               "batchnorm_alt": {**CS231N["layers"]["batchnorm_alt"], "forward": "BatchNorm.forward",
                                 "backward": "BatchNorm.backward_alt"},
               # fully_connected_networks.py's network, and convolutional_networks.py's
               "mlp": CS231N["layers"]["mlp"], "convnet": CS231N["layers"]["convnet"]},
}

# Koki Saito's "Deep Learning from Scratch" (O'Reilly Japan, 2016), common/layers.py, which its readers write
# again: classes made with their parameters, Affine(W, b) with W (in, out), Convolution(W, b, stride, pad),
# Pooling(pool_h, pool_w, stride, pad), BatchNormalization(gamma, beta) (momentum 0.9 the old statistics' weight,
# eps 1e-6, forward(x, train_flg=False) in test mode); gradients in dW, db, dgamma, dbeta; SoftmaxWithLoss's
# forward(x, t) and backward(dout=1)
_DLFS_PARAMETERS = {"params": {"weight": "W", "bias": "b"}, "grads": {"weight": "dW", "bias": "db"}}
DLFS: dict[str, Any] = {
    "name": "dlfs",
    "style": "module",
    "params": "dict",
    "grads": "overwrite",
    "layers": {
        # Affine takes a pooling layer's (N, C, H, W) output as it is: it flattens x, and gives dx back in x's shape
        "linear": {"class": "Affine", "args": ["weight", "bias"], "weight": "in_out", "bias": "flat", "flatten": True,
                   **_DLFS_PARAMETERS},
        "relu": {"class": "Relu"},
        "sigmoid": {"class": "Sigmoid"},
        "conv": {"class": "Convolution", "args": ["weight", "bias", "stride", "padding"], **_DLFS_PARAMETERS},
        "maxpool": {"class": "Pooling", "args": ["kernel_height", "kernel_width", "stride", "padding"]},
        "batchnorm": {"class": "BatchNormalization", "args": ["weight", "bias"], "running_var": "biased",
                      "momentum": "keep", "eps": 1e-6, "train_keyword": "train_flg",
                      "params": {"weight": "gamma", "bias": "beta"}, "grads": {"weight": "dgamma", "bias": "dbeta"},
                      "optional": True},
        # Dropout(dropout_ratio): p the drop probability; train mode keeps x as it is, test mode scales it
        "dropout": {"class": "Dropout", "p": "drop", "inverted": False, "train_keyword": "train_flg", "optional": True},
        "softmax_cross_entropy": {"loss": "SoftmaxWithLoss", "input": "logits", "target": "labels",
                                  "reduction": "mean", "backward": "nothing", "log_epsilon": 1e-7},
        # common/optimizer.py: Momentum(lr, momentum), RMSprop(lr, decay_rate), Adam(lr, beta1, beta2), each with
        # update(params, grads); epsilon 1e-7, Adam's added before its bias correction scales the step
        "sgd_momentum": {"class": "Momentum", "optional": True},
        "rmsprop": {"class": "RMSprop", "eps": 1e-7, "optional": True},
        "adam": {"class": "Adam", "eps": 1e-7, "eps_form": "scaled", "optional": True},
    },
}

# Deep Learning from Scratch 2 (Koki Saito, O'Reilly Japan): common/layers.py and common/time_layers.py, each layer's
# params and grads lists (the gradients written into grads' arrays in place), its RNN and LSTM cells made with their
# parameters, the LSTM's gates f, g, i, o
_LISTS = {"params": {"weight": "params.0", "bias": "params.1"}, "grads": {"weight": "grads.0", "bias": "grads.1"}}
_CELL_LISTS = {"args": ["weight_ih", "weight_hh", "bias"], "weight": "in_out",
               "params": {"weight_ih": "params.0", "weight_hh": "params.1", "bias": "params.2"},
               "grads": {"weight_ih": "grads.0", "weight_hh": "grads.1", "bias": "grads.2"}}
DLFS2: dict[str, Any] = {
    "name": "dlfs2",
    "style": "module",
    "params": "dict",
    "grads": "overwrite",
    "layers": {
        "linear": {"class": "Affine", "args": ["weight", "bias"], "weight": "in_out", "bias": "flat", **_LISTS},
        "sigmoid": {"class": "Sigmoid"},
        "dropout": {**DLFS["layers"]["dropout"]},
        "softmax_cross_entropy": {**DLFS["layers"]["softmax_cross_entropy"]},
        "rnn_step": {"class": "RNN", **_CELL_LISTS, "optional": True},
        "lstm_step": {"class": "LSTM", **_CELL_LISTS, "gates": "fgio", "optional": True},
    },
}

BUILT_IN = {c["name"]: c for c in (CS231N, UVA, UVA_ELU, UVA_LEAKY, CS324, TORCH, EECS498, DLFS, DLFS2)}

_CHOICES = {"weight": ("in_out", "out_in", "any"), "bias": ("flat", "row", "column", "any"), "running_var": ("biased", "unbiased"),
            "momentum": ("keep", "update"), "input": ("logits", "probabilities"), "target": ("labels", "one_hot"),
            "reduction": ("mean", "sum", "none"), "output": ("logits", "probabilities"),
            "activation": ("relu", "elu", "leaky_relu"), "gates": tuple("".join(p) for p in permutations("ifgo")),
            "p": ("keep", "drop"), "batch": ("rows", "columns"), "grad": ("sum", "mean"), "layout": ("flat", "row"),
            "images": ("nchw", "nhwc"), "test_eps": ("inside", "none"), "learning_rate": ("config", "argument"),
            "eps_form": ("corrected", "scaled")}


# the settings a layer's table may hold besides the names of the student's code it needs
_OPTIONS = {"linear": ("weight", "bias"), "batchnorm": ("running_var", "momentum", "test_eps"),
            "batchnorm_alt": ("running_var", "momentum", "test_eps"),
            "spatial_batchnorm": ("running_var", "momentum", "test_eps"), "dropout": ("p", "inverted"),
            "softmax_cross_entropy": ("softmax", "input", "target", "reduction", "fused", "backward", "grad",
                                      "log_epsilon"),
            "mse_loss": ("reduction", "grad", "dims"), "l1_loss": ("reduction", "grad", "dims"),
            "bce_loss": ("input", "reduction", "grad", "dims"),
            "adam": ("first_t", "learning_rate", "eps_form"), "sgd_momentum": ("learning_rate",),
            "rmsprop": ("learning_rate",),
            "lstm_step": ("gates",), "lstm": ("gates",)}
# ... and in the module style: the names of plain-attribute parameters and gradients, the class's arguments,
# an activation whose backward() returns its derivative; batch norm's running statistics' names, the keyword
# of forward that selects evaluation mode (CMU's forward(Z, eval=True)), gamma's layout (CMU's (1, D)) and the
# eps its constructor sets (CMU's 1e-8; torch's 1e-5 by default)
_MODULE_OPTIONS = {"linear": ("params", "grads", "accumulate", "args", "grad", "flatten"),
                   "conv": ("params", "grads", "accumulate", "args"),
                   "maxpool": ("args",), "elu": ("args", "derivative"), "leaky_relu": ("args", "derivative"),
                   "relu": ("derivative",), "sigmoid": ("derivative",), "tanh": ("derivative",),
                   "mlp": ("args", "output", "fused", "activation"),
                   "batchnorm": ("params", "grads", "accumulate", "args", "running", "eval_keyword", "train_keyword",
                                 "layout", "eps"),
                   "dropout": ("eval_keyword", "train_keyword"),
                   "rnn_step": ("params", "grads", "accumulate", "args", "weight", "grad", "backward", "batched",
                                "upstream"),
                   "lstm_step": ("params", "grads", "accumulate", "args", "weight", "grad", "batched", "upstream"),
                   "gru_step": ("params", "grads", "accumulate", "weight", "grad", "batched", "gates", "upstream"),
                   "mse_loss": ("backward",), "l1_loss": ("backward",), "bce_loss": ("backward",),
                   "sgd_momentum": ("args",), "rmsprop": ("args", "eps"), "adam": ("args", "eps")}
# ... and in the functional style: a linear layer whose samples are columns (x (D, N)) and whose weight gradients
# are averaged over the batch (deeplearning.ai's linear_backward: dW = dZ A.T / m)
_FUNCTIONAL_OPTIONS = {"linear": ("batch", "grad"), "conv": ("images",), "maxpool": ("images",),
                       "elu": ("args",), "leaky_relu": ("args",)}
# ... and in the module style, for a layer but the MLP: ``dx``, the attribute its backward keeps the input's gradient
# in where it returns nothing (CS 7643's self.dx), and for the loss ``loss_item``, its place in what the forward
# returns (CS 7643's (probs, loss)): ``_check_kept``
_PARAMETERS = ("weight", "bias")  # the parameters of the kinds that take params/grads tables ...
# ... but an RNN cell's: its two weights and a bias, or two biases (CMU's b_ih and b_hh, torch's)
_CELL = (("weight_ih", "weight_hh", "bias"), ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
# ... and a GRU cell's: stacked, its gates' blocks side by side (torch's), or a weight and a bias per gate (CMU's)
_GRU = (("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
        tuple(f"{p}_{s}{g}" for p in ("weight", "bias") for s in "ih" for g in "rzn"))
_PARAMETER_SETS = {"rnn_step": _CELL, "lstm_step": _CELL, "gru_step": _GRU}
_LOSSES = ("softmax_cross_entropy", "mse_loss", "l1_loss", "bce_loss")  # the module style's loss classes
_TOP = ("name", "base", "style", "arrays", "params", "grads", "layers")


def _dotted(name: str, places: bool = False) -> bool:
    """A Python name, or a dotted path of them (``Linear.forward``, ``conv2d_stride1.W``); with ``places``, a part
    after the first may be a list's place (an attribute's path: ``params.0``)."""
    first, *rest = name.split(".")
    return first.isidentifier() and all(part.isidentifier() or (places and part.isdigit() and part.isascii())
                                        for part in rest)


def _check_module_options(kind: str, entry: dict[str, Any], where: str) -> None:
    """A module-style layer's ``params``/``grads`` tables (attribute names) and ``args`` list, if it has them."""
    from twinnet.grader.kinds.modules import ARGUMENTS, CARRIED, SQUARE

    tables = [k for k in ("params", "grads") if k in entry]
    if len(tables) == 1:
        raise TwinnetError(f"{where}: params and grads name the layer's attributes together (params = {{weight = "
                           f"\"W\", bias = \"b\"}}, grads = {{weight = \"dW\", bias = \"db\"}}); it has only "
                           f"{tables[0]}")
    sets = _PARAMETER_SETS.get(kind, (_PARAMETERS,))
    for key in tables:
        table = entry[key]
        if not isinstance(table, dict) or set(table) not in [set(names) for names in sets] or \
                not all(isinstance(v, str) and _dotted(v, places=True) for v in table.values()):
            d = "d" if key == "grads" else ""
            example = (f"{key} = {{weight = \"{d}W\", bias = \"{d}b\"}}" if kind not in _PARAMETER_SETS else
                       f"{key} = {{weight_ih = \"{d}W_ih\", weight_hh = \"{d}W_hh\", bias_ih = \"{d}b_ih\", bias_hh = "
                       f"\"{d}b_hh\"}}" + (", or a weight and a bias per gate" if kind == "gru_step" else
                                               ", or one bias"))
            raise TwinnetError(f"{where}: {key} must be a table naming the attribute of each of "
                               f"{' or '.join(', '.join(names) for names in sets)} (e.g. {example}; a dotted path "
                               f"reaches into a member, or a list's entry: \"params.0\"), got {table!r}")
    if len(tables) == 2 and set(entry["params"]) != set(entry["grads"]):
        raise TwinnetError(f"{where}: params and grads name the same parameters, got {', '.join(entry['params'])} "
                           f"and {', '.join(entry['grads'])}")
    if not isinstance(entry.get("accumulate", False), bool):
        raise TwinnetError(f"{where}: accumulate must be true or false (whether this layer's backward adds to its "
                           "gradients over calls, as torch's does until zero_grad, or overwrites them: the spec's "
                           "grads = \"accumulate\" or \"overwrite\" for this layer alone), got "
                           f"{entry['accumulate']!r}")
    running = entry.get("running", {"mean": "running_mean", "var": "running_var"})
    if not isinstance(running, dict) or set(running) != {"mean", "var"} or \
            not all(isinstance(v, str) and _dotted(v, places=True) for v in running.values()):
        raise TwinnetError(f"{where}: running must be a table naming the attributes of the running mean and "
                           f"variance (e.g. running = {{mean = \"running_M\", var = \"running_V\"}}), got {running!r}")
    eps = entry.get("eps", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise TwinnetError(f"{where}: eps must be the number the layer's constructor sets (e.g. eps = 1e-8), "
                           f"between 0 and 1, got {eps!r}")
    for key, example in (("eval_keyword", "eval_keyword = \"eval\" for forward(Z, eval=True)"),
                         ("train_keyword", "train_keyword = \"train_flg\" for forward(x, train_flg=False)")):
        if key in entry and not (isinstance(entry[key], str) and entry[key].isidentifier()):
            raise TwinnetError(f"{where}: {key} must be the name of forward's keyword argument that selects "
                               f"evaluation mode (e.g. {example}), got {entry[key]!r}")
    if "eval_keyword" in entry and "train_keyword" in entry:
        raise TwinnetError(f"{where}: eval_keyword and train_keyword both select evaluation mode; give one")
    if "args" in entry:
        names = [name for name, _ in ARGUMENTS[kind]]
        args = entry["args"]
        listed = args if isinstance(args, list) else []
        needed = [name for name, fixed in ARGUMENTS[kind] if fixed is None
                  and not any(other in listed for other in CARRIED.get(kind, {}).get(name, ()))]
        if isinstance(args, list) and "weight" in args and entry.get("weight") == "any":
            raise TwinnetError(f"{where}: args naming \"weight\" gives the class the grader's array, of one layout: "
                               "weight = \"in_out\" or \"out_in\" (not \"any\") says which")
        if isinstance(args, list) and len({"kernel_height", "kernel_width"} & set(args)) == 1:
            raise TwinnetError(f"{where}: args names a pooling window's kernel_height and kernel_width together, or "
                               f"neither (kernel_size), got {args!r}")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args) or \
                len(set(args)) != len(args) or set(args) - set(names) or set(needed) - set(args):
            left = ", ".join(f"{name} (then {fixed})" for name, fixed in ARGUMENTS[kind]
                             if fixed is not None and not hasattr(fixed, "array") and fixed is not SQUARE)
            carried = [f"{name} (given {' and '.join(by)})" for name, by in CARRIED.get(kind, {}).items()]
            left += (", " if left and carried else "") + ", ".join(carried)
            raise TwinnetError(f"{where}: args must list the class's arguments in its order, each once, from "
                               f"{', '.join(names)}" + (f"; it may leave out {left}" if left else "; all of them")
                               + f", got {args!r}")


def _check_kept(kind: str, entry: dict[str, Any], where: str) -> None:
    """A module-style layer's ``dx`` (the attribute its backward keeps the input's gradient in, returning
    nothing) and a loss's ``loss_item`` (the loss's place in the tuple its forward returns), if it has them."""
    if isinstance(entry.get("dx"), str) and entry["dx"].startswith("self."):
        raise TwinnetError(f"{where}: dx names the attribute without self. (dx = \"{entry['dx'][5:]}\" for "
                           f"{entry['dx']}), got {entry['dx']!r}")
    if "dx" in entry and not (isinstance(entry["dx"], str) and _dotted(entry["dx"], places=True)):
        raise TwinnetError(f"{where}: dx must name the attribute the layer's backward keeps the gradient with respect "
                           f"to its input in, where backward returns nothing (e.g. dx = \"dx\" for self.dx), got "
                           f"{entry['dx']!r}")
    if "loss_item" in entry and kind in _LOSSES and (
            isinstance(entry["loss_item"], bool) or not isinstance(entry["loss_item"], int)
            or not 0 <= entry["loss_item"] < 8):
        raise TwinnetError(f"{where}: loss_item must be the loss's place in the tuple the loss's forward returns, "
                           f"counted from 0 (e.g. loss_item = 1 for a forward returning (probs, loss)), got "
                           f"{entry['loss_item']!r}")


def _on_base(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """``spec`` laid over the built-in convention it names as ``base``: its settings replace the base's, and each
    of its layer tables is laid over the base's table of that kind (a kind the base lacks is added)."""
    base = spec["base"]
    if not isinstance(base, str) or base not in BUILT_IN:
        raise TwinnetError(f"{where}: base must name a built-in convention ({', '.join(BUILT_IN)}), got {base!r}")
    layers = spec.get("layers", {})
    if not isinstance(layers, dict):
        raise TwinnetError(f"{where}: layers must be a table of [layers.KIND] tables")
    if spec.get("style", BUILT_IN[base]["style"]) != BUILT_IN[base]["style"]:
        raise TwinnetError(f"{where}: base = \"{base}\" is a {BUILT_IN[base]['style']}-style convention and this "
                           f"spec's style is {spec['style']!r}: a spec on a base keeps its style (for another, write the "
                           "whole convention without base)")
    merged = {k: v for k, v in BUILT_IN[base].items() if k != "name"}
    merged.update({k: v for k, v in spec.items() if k not in ("base", "layers")})
    merged["layers"] = {kind: {**entry, **layers[kind]} if isinstance(layers.get(kind), dict)
                        else layers.get(kind, entry) for kind, entry in BUILT_IN[base]["layers"].items()}
    merged["layers"].update({kind: entry for kind, entry in layers.items() if kind not in merged["layers"]})
    return merged


def load_spec(path: Path) -> dict[str, Any]:
    """A convention from a TOML file (the schema of the built-in ones), checked."""
    path = Path(path)
    if path.is_char_device() or path.is_block_device() or path.is_socket():  # /dev/zero or a terminal: no end
        raise TwinnetError(f"--spec {path} is a device, not a file; name the course's spec, a .toml file")
    try:
        # a file, or a pipe that ends (--spec <(make-spec)): a spec is a few kilobytes; opened without waiting, as
        # a named pipe no one writes would wait for ever (it then reads as empty)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            text = f.read(2**20 + 1)
        if len(text) > 2**20:
            raise TwinnetError(f"--spec {path} holds more than a MiB, not a spec of a few kilobytes: name the "
                               "course's .toml file")
        spec = tomllib.loads(text.decode())
    except IsADirectoryError:
        raise TwinnetError(f"--spec {path} is a folder; name the course's spec, a .toml file in it") from None
    except OSError as e:
        raise TwinnetError(f"--spec {path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TwinnetError(f"--spec {path} is not valid TOML ({e})") from None
    return validate(spec, f"--spec {path}")


def validate(spec: Any, where: str) -> dict[str, Any]:
    """``spec`` if it is a convention the checks can follow, else a one-line ``TwinnetError``."""
    from twinnet.grader.kinds import KINDS

    if not isinstance(spec, dict):
        raise TwinnetError(f"{where}: a convention is a table of settings ({', '.join(_TOP)})")
    if not spec:
        raise TwinnetError(f"{where} is empty: a spec gives its style (\"functional\" or \"module\") and a "
                           "[layers.KIND] table for each layer, or a base convention to change (README, \"For "
                           "teachers\")")
    if unknown := [k for k in spec if k not in _TOP]:
        raise TwinnetError(f"{where}: unknown setting(s) {', '.join(unknown)}; a convention holds {', '.join(_TOP)}")
    if "base" in spec:
        spec = _on_base(spec, where)
    if "name" in spec and not (isinstance(spec["name"], str) and spec["name"].strip()):
        raise TwinnetError(f"{where}: name must be a string that is not blank (the convention's name in the "
                           f"report, e.g. name = \"mycourse\"), got {spec['name']!r}")
    style = spec.get("style")
    if style not in ("functional", "module"):
        raise TwinnetError(f"{where}: style must be \"functional\" or \"module\", got {style!r}")
    if not isinstance(spec.get("layers"), dict) or not spec["layers"]:
        raise TwinnetError(f"{where}: a convention needs a [layers.KIND] table for each layer to check")
    if spec.get("arrays", "numpy") not in ("numpy", "torch"):
        raise TwinnetError(f"{where}: arrays must be \"numpy\" or \"torch\" (what the layers take and return), "
                           f"got {spec['arrays']!r}")
    if spec.get("arrays") == "torch" and style != "functional":
        raise TwinnetError(f"{where}: arrays = \"torch\" is for functional courses (EECS 498's Linear.forward(x, w, "
                           "b)); a module course's weights are read as NumPy arrays: remove it, or grade its "
                           "functions in the functional style")
    if style == "module":
        if spec.get("params", "dict") not in ("dict", "attributes"):
            raise TwinnetError(f"{where}: params must be \"dict\" or \"attributes\"")
        if spec.get("grads", "overwrite") not in ("overwrite", "accumulate"):
            raise TwinnetError(f"{where}: grads must be \"overwrite\" or \"accumulate\"")
    for kind, entry in spec["layers"].items():
        if kind in KINDS and kind != "mlp" and isinstance(entry, dict) and style == "module" and \
                KINDS[kind].needs(style):
            _check_kept(kind, entry, f"{where}: [layers.{kind}]")
        if kind not in KINDS:
            raise TwinnetError(f"{where}: unknown layer kind {kind!r}; known: {', '.join(sorted(KINDS))}")
        if not isinstance(entry, dict):
            raise TwinnetError(f"{where}: [layers.{kind}] must be a table")
        needed = KINDS[kind].needs(style)
        other = "module" if style == "functional" else "functional"
        if not needed:
            raise TwinnetError(f"{where}: [layers.{kind}]: a {KINDS[kind].titled(style)} cannot be checked in the "
                               f"{style} style" + (f" (it can in the {other} style)" if KINDS[kind].needs(other) else "")
                               + "; remove that table or check it with a spec of the other style")
        known = (*needed, *_OPTIONS.get(kind, ()), *(_MODULE_OPTIONS.get(kind, ()) if style == "module" else
                                                     _FUNCTIONAL_OPTIONS.get(kind, ())), "optional", "graded",
                 *(("dx",) if style == "module" and kind not in ("mlp", "rnn_step", "lstm_step") else ()),
                 *(("loss_item",) if style == "module" and kind in _LOSSES else ()))
        if kind == "lstm_step" and style == "module" and "backward" in entry:
            raise TwinnetError(f"{where}: [layers.{kind}]: an LSTM cell's backward is given (dh, dc) and returns (dx, "
                               "dh_prev, dc_prev); backward = \"states\" is for an RNN cell's (CMU 11-785's "
                               "RNNCell.backward(delta, h_t, h_prev_l, h_prev_t)): remove backward")
        if unknown := [k for k in entry if k not in known]:
            hint = ""
            others = [*KINDS[kind].needs(other), *(_MODULE_OPTIONS if other == "module" else _FUNCTIONAL_OPTIONS)
                      .get(kind, ())]
            if theirs := [k for k in unknown if k in others and k not in known]:
                hint = f" ({', '.join(theirs)} belong{'s' if len(theirs) == 1 else ''} to the {other} style; this spec's is {style})"
            raise TwinnetError(f"{where}: [layers.{kind}]: unknown key(s) {', '.join(unknown)}; in the {style} style "
                               f"it takes {', '.join(known)}{hint}")
        if missing := [k for k in needed if not isinstance(entry.get(k), str)]:
            raise TwinnetError(f"{where}: [layers.{kind}] needs {', '.join(missing)} (names in the student's code)")
        if odd := [f"{k} = {entry[k]!r}" for k in (*needed, "softmax", "linear") if isinstance(entry.get(k), str)
                   and not _dotted(entry[k])]:
            raise TwinnetError(f"{where}: [layers.{kind}] {', '.join(odd)} is not a Python name (or a dotted path of "
                               "names, as Linear.forward)")
        _check_module_options(kind, entry, f"{where}: [layers.{kind}]")
        if style == "functional" and "args" in entry and "." not in entry["forward"]:
            raise TwinnetError(f"{where}: [layers.{kind}] args in the functional style lists the arguments of the "
                               "class whose instance's methods are named (forward = \"LeakyRelu.forward\", a class "
                               f"LeakyRelu(negative_slope)); forward = {entry['forward']!r} names no class's method")
        if not isinstance(entry.get("optional", False), bool):
            raise TwinnetError(f"{where}: [layers.{kind}] optional must be true or false (a layer the files may "
                               f"lack), got {entry['optional']!r}")
        if not isinstance(entry.get("graded", True), bool):
            raise TwinnetError(f"{where}: [layers.{kind}] graded must be true or false (false: a layer the course "
                               f"gives, not the student's, left out unless --only names it), got {entry['graded']!r}")
        if "upstream" in entry and (entry["upstream"] not in ("vector", "row") or entry.get("batched", True)):
            raise TwinnetError(f"{where}: [layers.{kind}] upstream = \"row\" gives a cell of batched = false its "
                               "upstream gradient as a (1, H) row (\"vector\": (H,), the default); it needs batched "
                               f"= false, got upstream = {entry['upstream']!r}")
        if kind == "gru_step" and "gates" in entry:
            if entry["gates"] not in ["".join(p) for p in permutations("rzn")]:
                raise TwinnetError(f"{where}: [layers.{kind}] gates must be the order of a GRU's gates r, z and n in "
                                   f"its stacked weights (\"rzn\": torch's), got {entry['gates']!r}")
            if isinstance(entry.get("params"), dict) and "weight_ir" in entry["params"]:
                raise TwinnetError(f"{where}: [layers.{kind}] gates orders stacked weights; a weight for each gate "
                                   "(weight_ir, ...) has none: remove gates")
        for key, allowed in _CHOICES.items():
            if kind == "gru_step" and key == "gates":
                continue
            if key in entry and entry[key] not in allowed:
                raise TwinnetError(f"{where}: [layers.{kind}] {key} must be one of {', '.join(allowed)}")
        for key in ("fused", "derivative", "inverted", "flatten", "batched"):
            if key in entry and not isinstance(entry[key], bool):
                raise TwinnetError(f"{where}: [layers.{kind}] {key} must be true or false, got {entry[key]!r}")
        if "first_t" in entry and (isinstance(entry["first_t"], bool) or entry["first_t"] not in (1, 2)):
            raise TwinnetError(f"{where}: [layers.{kind}] first_t must be 1 (the first step's bias correction uses "
                               "t = 1, as the paper and torch) or 2 (CS231n's 2017 starter: config['t'] starts "
                               f"at 1 and is incremented before use), got {entry['first_t']!r}")
        if kind in _PARAMETER_SETS and style == "module" and entry.get("weight") == "any":
            raise TwinnetError(f"{where}: [layers.{kind}] weight must be \"in_out\" (x @ Wx, (D, H)) or "
                               "\"out_in\" (x @ W_ih.T, (H, D), torch's and CMU's)")
        if kind == "rnn_step" and style == "module":
            if entry.get("backward", "dout") not in ("dout", "states"):
                raise TwinnetError(f"{where}: [layers.{kind}] backward must be \"dout\" (backward(dh) from what the "
                                   "forward kept) or \"states\" (backward(dh, h, x, h_prev), CMU 11-785's RNNCell), "
                                   f"got {entry['backward']!r}")

        if kind in _LOSSES and entry.get("backward", "inputs") not in ("inputs", "nothing"):
            raise TwinnetError(f"{where}: [layers.{kind}] backward must be \"inputs\" (the loss's backward takes "
                               f"the forward's inputs again) or \"nothing\" (it takes no arguments), got "
                               f"{entry['backward']!r}")
        if style == "functional" and entry.get("bias") == "any":
            raise TwinnetError(f"{where}: [layers.{kind}] bias = \"any\" is for module-style courses whose "
                               "students create the bias; in the functional style the grader passes it: flat, row "
                               "or column")
        if style == "functional" and entry.get("weight") == "any":
            raise TwinnetError(f"{where}: [layers.{kind}] weight = \"any\" is for module-style courses whose "
                               "students create the weight; in the functional style the grader passes it: in_out "
                               "or out_in")
        if "log_epsilon" in entry and (isinstance(entry["log_epsilon"], bool) or
                                       not isinstance(entry["log_epsilon"], (int, float)) or
                                       not 0 < entry["log_epsilon"] <= 1e-2):
            raise TwinnetError(f"{where}: [layers.{kind}] log_epsilon must be the epsilon the course's own loss adds "
                               "inside its log, -log(p + eps), between 0 and 0.01 (e.g. log_epsilon = 1e-7), got "
                               f"{entry['log_epsilon']!r}")
        if "dims" in entry and (isinstance(entry["dims"], bool) or not isinstance(entry["dims"], int)
                                or entry["dims"] not in (1, 2)):
            raise TwinnetError(f"{where}: [layers.{kind}] dims must be 1 (the loss takes (N,) vectors, as TUM I2DL's) "
                               f"or 2 ((N, C) arrays, as torch's and CMU 11-785's), got {entry['dims']!r}")
        if kind == "softmax_cross_entropy" and entry.get("input") == "probabilities" and \
                not isinstance(entry.get("softmax"), str):
            raise TwinnetError(f"{where}: [layers.{kind}] input = \"probabilities\" needs softmax = \"NAME\" (the "
                               "student's softmax, whose output the loss takes)")
    if all(entry.get("graded", True) is False for entry in spec["layers"].values()):
        raise TwinnetError(f"{where}: the convention grades no layer: every [layers.KIND] table has graded = false "
                           "(a layer the course gives); remove it from the tables of the layers to grade")
    return {"name": spec.get("name", Path(where).stem), **spec}
