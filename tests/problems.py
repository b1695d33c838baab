"""Test problems: a model, parameters, a batch and two directions, on the backend and on the host,
with the torch oracle's net-output function beside them. Shared by every model's tests.

``CASES`` holds every registered model's configurations (arrayhf/models/registry.py), named
"model/configuration"; ``PROBLEMS`` says which problem class (or builder) and which
configurations each registered model has. A model added to the registry without an entry in
``PROBLEMS`` stops the tests here, at collection."""

from __future__ import annotations

import numpy as np

import arrayhf
from arrayhf import backend
from arrayhf.models import registry
from arrayhf.models.mrnn import MRNN
from oracles import core as oracle
from oracles import gru as oracle_gru
from oracles import lstm as oracle_lstm

from helpers import host

# (layer sizes, hidden nonlinearities, output, masked)
FNN_ARCHITECTURES = {
    "tanh-softmax": ([4, 6, 3], ["tanh"], "softmax", False),
    "tanh-softmax-masked": ([4, 6, 3], ["tanh"], "softmax", True),
    "logistic-relu-logistic-masked": ([5, 7, 6, 2], ["logistic", "relu"], "logistic", True),
    "autoencoder-linear": ([3, 5, 4, 5, 3], ["tanh", "linear", "logistic"], "linear", False),
    "autoencoder-linear-masked": ([3, 5, 4, 5, 3], ["tanh", "linear", "logistic"], "linear", True),
    "no-hidden-layer-softmax": ([6, 4], [], "softmax", True),
}
# RNN(**arguments), float inputs [T, B, n_in] or character ids [T, B], and its mask (N_STEPS
# steps, N_CASES sequences): "last": one output per sequence, at its last step, lengths 5..7
# (zero padding past the end); "random": random steps count; "lengths": every step of sequences
# of 3..7 steps; None: every step counts.
RNN_CONFIGURATIONS = {
    "tanh-linear-last-step": (dict(n_inputs=2, n_hidden=6, n_outputs=1, hidden="tanh",
                                   output="linear", biases=True), "float", "last"),
    "tanh-softmax-no-biases": (dict(n_inputs=3, n_hidden=5, n_outputs=4, hidden="tanh",
                                    output="softmax", biases=False), "float", "random"),
    "logistic-logistic-every-step": (dict(n_inputs=2, n_hidden=5, n_outputs=2, hidden="logistic",
                                          output="logistic", biases=True), "float", None),
    "ids-softmax-lengths": (dict(n_inputs=4, n_hidden=5, n_outputs=4, hidden="tanh",
                                 output="softmax", biases=True), "ids", "lengths"),
}
N_CASES, N_STEPS = 7, 7


def host_targets(rng, output, shape):
    if output == "linear":
        return rng.standard_normal(shape)
    if output == "logistic":
        return rng.uniform(size=shape)  # soft targets in [0, 1]
    return np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]


class Problem:
    """A model and its data on (xp, dtype, device), their host copies, and the oracle."""

    def __init__(self, model, host_arrays, oracle_net_output, xp, device, dtype="float64"):
        self.model, self.host = model, host_arrays
        self.oracle_net_output = oracle_net_output
        self.output = model.output.name
        self.xp, self.device = xp, device
        self.dtype = backend.resolve_dtype(xp, dtype)
        self.params, self.v, self.u = (self.to_xp(host_arrays[k]) for k in ("params", "v", "u"))
        mask = host_arrays["mask"]
        self.batch = arrayhf.Batch(self.to_xp(host_arrays["inputs"]),
                                   self.to_xp(host_arrays["targets"]),
                                   None if mask is None else self.to_xp(mask))

    def to_xp(self, array):
        return backend.from_host(array, self.xp, dtype=self.dtype, device=self.device)

    # host functions of a host parameter vector, for finite differences
    def loss_at(self, params):
        return self.model.loss(self.to_xp(params), self.batch)

    def net_output_at(self, params):
        return self.model.forward(self.to_xp(params), self.batch.inputs).net_output

    def tensors(self):
        """(params, inputs, targets, mask, v) as float64 torch tensors."""
        mask = None if self.host["mask"] is None else oracle.tensor(self.host["mask"])
        return (oracle.tensor(self.host["params"]), oracle.tensor(self.host["inputs"]),
                oracle.tensor(self.host["targets"]), mask, oracle.tensor(self.host["v"]))

    def oracle(self):
        """(loss, gradient, J v, G v) by torch.func."""
        params, inputs, targets, mask, v = self.tensors()
        return oracle.oracle_products(lambda p: self.oracle_net_output(p, inputs), self.output,
                                      params, v, targets, mask)


def fnn_problem(name, xp, device, dtype="float64", seed=0):
    sizes, hidden, output, masked = FNN_ARCHITECTURES[name]
    model = arrayhf.FNN(sizes, hidden=hidden, output=output)
    rng = np.random.default_rng(seed)
    mask = None
    inputs = rng.standard_normal((N_CASES, sizes[0]))
    targets = host_targets(rng, output, (N_CASES, sizes[-1]))
    if masked:
        mask = (rng.uniform(size=N_CASES) < 0.6).astype(np.float64)
        mask[0] = 1.0  # at least one output counts
    host_arrays = {
        # dense init: weights of every size, so no unit sits in a flat region by accident
        "params": host(model.init(seed, scheme="dense", scale=1.5)),
        "inputs": inputs, "targets": targets, "mask": mask,
        "v": rng.standard_normal(model.n_params), "u": rng.standard_normal(model.n_params),
    }
    return Problem(model, host_arrays,
                   lambda p, x: oracle.fnn_net_output(sizes, hidden, p, x), xp, device, dtype)


MRNN_STEPS, MRNN_CASES = 6, 5
# MRNN(**arguments), the inputs ("ids": integer character ids [T, B]; "float": N(0, 1) features
# [T, B, n_in]) and the mask ("lengths": sequences of 3 to 6 steps padded to 6, with junk in the
# padding and every step of a sequence scored; "random": random steps scored; None: every step).
MRNN_CONFIGURATIONS = {
    "paper-ids-softmax-lengths": (
        dict(n_inputs=4, n_hidden=4, n_factors=3, n_outputs=4, output="softmax",
             variant="paper"), "ids", "lengths"),
    "paper-float-linear-logistic-hidden-no-biases": (
        dict(n_inputs=3, n_hidden=4, n_factors=5, n_outputs=2, output="linear",
             hidden="logistic", variant="paper", biases=False), "float", "random"),
    "release-ids-softmax-lengths-no-biases": (
        dict(n_inputs=5, n_hidden=4, n_factors=3, n_outputs=5, output="softmax",
             variant="release", biases=False), "ids", "lengths"),
    "release-float-logistic-every-step": (
        dict(n_inputs=3, n_hidden=3, n_factors=4, n_outputs=2, output="logistic",
             variant="release"), "float", None),
}
MRNN_ID_CONFIGURATIONS = [name for name, (_, kind, _) in MRNN_CONFIGURATIONS.items()
                          if kind == "ids"]


class SequenceProblem:
    """A recurrent model with parameters, a batch and two directions on (xp, dtype, device),
    their host copies, and the oracle. Integer ids stay integers on every backend
    (``ids_dtype``). Each recurrent model's problem sets the class attributes: its
    configurations (arguments, inputs kind, mask kind), its class, the sizes, its oracle's
    functions, and which units its structural damping term covers (``structural_units``)."""

    configurations: dict
    model_class: type
    # the oracle's (a, z) = forward(config, θ, inputs) and S v = structural(config, θ, inputs,
    # v, output count), written apart from arrayhf in torch
    oracle_forward = staticmethod(oracle.rnn_pre_activations_and_net_output)
    oracle_structural = staticmethod(oracle.rnn_structural_product)
    n_steps, n_cases = N_STEPS, N_CASES

    def __init__(self, name, xp, device, dtype="float64", seed=0, one_hot=False,
                 ids_dtype="int64"):
        arguments, kind, mask_kind = self.configurations[name]
        self.model = self.model_class(**arguments)
        self.output = self.model.output.name
        self.xp, self.device = xp, device
        self.dtype = backend.resolve_dtype(xp, dtype)
        rng = np.random.default_rng(seed)
        shape = (self.n_steps, self.n_cases)
        n_inputs = arguments["n_inputs"]
        if kind == "ids":
            inputs = rng.integers(0, n_inputs, shape)
        else:
            inputs = rng.standard_normal(shape + (n_inputs,))
        targets = host_targets(rng, arguments["output"], shape + (arguments["n_outputs"],))
        inputs, mask = self._mask(rng, mask_kind, inputs)
        if one_hot:
            inputs = np.eye(n_inputs)[inputs]
        self.host = {
            "params": 0.6 * rng.standard_normal(self.model.n_params),
            "inputs": inputs, "targets": targets, "mask": mask,
            "v": rng.standard_normal(self.model.n_params),
            "u": rng.standard_normal(self.model.n_params),
        }
        self.params, self.v, self.u = (self.to_xp(self.host[k]) for k in ("params", "v", "u"))
        self.batch = arrayhf.Batch(self.inputs_to_xp(inputs, ids_dtype), self.to_xp(targets),
                                   None if mask is None else self.to_xp(mask))

    def _mask(self, rng, mask_kind, inputs):
        """(inputs, mask) for the mask kind: "lengths" (every step of sequences of 3 to
        n_steps steps), "last" (the last step of sequences of n_steps − 2 to n_steps steps,
        inputs zero past the end), "random" (random steps) or None (every step)."""
        shape = (self.n_steps, self.n_cases)
        steps = np.arange(self.n_steps)[:, None]
        if mask_kind == "lengths":
            lengths = rng.integers(3, self.n_steps + 1, self.n_cases)
            lengths[0] = self.n_steps
            return inputs, (steps < lengths).astype(np.float64)
        if mask_kind == "last":
            lengths = rng.integers(self.n_steps - 2, self.n_steps + 1, self.n_cases)
            inputs = inputs * (steps < lengths)[:, :, None]       # zero padding past the end
            return inputs, (steps == lengths - 1).astype(np.float64)
        if mask_kind == "random":
            mask = (rng.uniform(size=shape) < 0.5).astype(np.float64)
            mask[-1, 0] = 1.0
            return inputs, mask
        return inputs, None

    def to_xp(self, array):
        return backend.from_host(array, self.xp, dtype=self.dtype, device=self.device)

    def inputs_to_xp(self, inputs, ids_dtype="int64"):
        if np.issubdtype(inputs.dtype, np.integer):
            return backend.from_host(inputs.astype(ids_dtype), self.xp, device=self.device)
        return self.to_xp(inputs)

    def with_inputs(self, inputs):
        """The batch with other host inputs (same targets and mask)."""
        return arrayhf.Batch(self.inputs_to_xp(inputs), self.batch.targets, self.batch.mask)

    @property
    def output_count(self):
        mask = self.host["mask"]
        return float(mask.sum()) if mask is not None else float(self.n_steps * self.n_cases)

    # host functions of a host parameter vector, for finite differences
    def loss_at(self, params):
        return self.model.loss(self.to_xp(params), self.batch)

    def net_output_at(self, params):
        return self.model.forward(self.to_xp(params), self.batch.inputs).net_output

    def tensors(self):
        """(params, inputs, targets, mask, v) as torch tensors: float64, ids as int64."""
        inputs = oracle.inputs_tensor(self.host["inputs"])
        mask = None if self.host["mask"] is None else oracle.tensor(self.host["mask"])
        return (oracle.tensor(self.host["params"]), inputs, oracle.tensor(self.host["targets"]),
                mask, oracle.tensor(self.host["v"]))

    def oracle(self):
        """(loss, gradient, J v, G v) by torch.func."""
        params, inputs, targets, mask, v = self.tensors()
        config = self.model.config()
        return oracle.oracle_products(lambda p: self.oracle_forward(config, p, inputs)[1],
                                      self.model.output.name, params, v, targets, mask)

    def oracle_structural_product(self):
        params, inputs, _, _, v = self.tensors()
        return self.oracle_structural(self.model.config(), params, inputs, v, self.output_count)

    def oracle_pre_activations(self, params):
        """The pre-activations a(θ) [T, B, units] that the structural term damps, at host θ,
        from the oracle's forward pass (evaluated, not differentiated)."""
        inputs = self.tensors()[1]
        pre, _ = self.oracle_forward(self.model.config(), oracle.tensor(params), inputs)
        return pre.numpy()

    def structural_units(self):
        """(κ, tanh) over the last axis of the pre-activations: each unit's structural
        curvature κ_u, and whether the unit is tanh (else logistic). Here: one hidden
        nonlinearity and one κ for every hidden unit."""
        name, n_hidden = self.model.hidden.name, self.model.n_hidden
        assert name in ("tanh", "logistic"), name
        kappa = np.full(n_hidden, self.model.structural_curvature)
        return kappa, np.full(n_hidden, name == "tanh")


class RNNProblem(SequenceProblem):
    """An RNN on float inputs or character ids, with the oracle of oracles/core.py."""

    configurations, model_class = RNN_CONFIGURATIONS, arrayhf.RNN


class MRNNProblem(SequenceProblem):
    """An MRNN on ids or float rows, with the oracle of oracles/core.py."""

    configurations, model_class = MRNN_CONFIGURATIONS, MRNN
    oracle_forward = staticmethod(oracle.mrnn_pre_activations_and_net_output)
    oracle_structural = staticmethod(oracle.mrnn_structural_product)
    n_steps, n_cases = MRNN_STEPS, MRNN_CASES


def rnn_problem(name, xp, device, dtype="float64", seed=0):
    return RNNProblem(name, xp, device, dtype=dtype, seed=seed)


def mrnn_problem(name, xp, device, dtype="float64", seed=0):
    return MRNNProblem(name, xp, device, dtype=dtype, seed=seed)


# -- LSTM -----------------------------------------------------------------------------------
# LSTM(**arguments), inputs and mask as for the MRNN (MRNN_STEPS steps, MRNN_CASES sequences).
LSTM_CONFIGURATIONS = {
    "ids-softmax-lengths": (
        dict(n_inputs=4, n_hidden=3, n_outputs=4, output="softmax"), "ids", "lengths"),
    "float-linear-random-no-biases": (
        dict(n_inputs=3, n_hidden=4, n_outputs=2, output="linear", biases=False), "float",
        "random"),
    "float-logistic-every-step-kappa": (
        dict(n_inputs=2, n_hidden=3, n_outputs=2, output="logistic", structural_curvature=0.5),
        "float", None),
}
LSTM_ID_CONFIGURATIONS = [name for name, (_, kind, _) in LSTM_CONFIGURATIONS.items()
                          if kind == "ids"]


class LSTMProblem(SequenceProblem):
    """An LSTM with parameters, a batch and two directions, and its own oracle (oracles/lstm.py)."""

    configurations, model_class = LSTM_CONFIGURATIONS, arrayhf.LSTM
    oracle_forward = staticmethod(oracle_lstm.lstm_pre_activations_and_net_output)
    oracle_structural = staticmethod(oracle_lstm.lstm_structural_product)
    n_steps, n_cases = MRNN_STEPS, MRNN_CASES

    def structural_units(self):
        """(LS18): the gate blocks i, f, g, o, each with its κ; g (the third) tanh, the
        others logistic."""
        n = self.model.n_hidden
        kappa = np.repeat(oracle_lstm.gate_curvatures(self.model.config()), n)
        return kappa, np.repeat([False, False, True, False], n)


def lstm_problem(name, xp, device, dtype="float64", seed=0):
    return LSTMProblem(name, xp, device, dtype=dtype, seed=seed)


# -- GRU ------------------------------------------------------------------------------------
GRU_STEPS, GRU_CASES = 5, 3
# GRU(**arguments), inputs and mask as for the MRNN ("ids" [T, B] or "float" [T, B, n_in];
# "lengths": sequences of 3 to 5 steps padded to 5, "random" steps scored, None: every step).
# One n_hidden and as few other sizes as cover the cases: JAX compiles once per shape.
GRU_CONFIGURATIONS = {
    "ids-softmax-lengths": (dict(n_inputs=4, n_hidden=3, n_outputs=4, output="softmax"),
                            "ids", "lengths"),
    "float-linear-random-no-biases": (dict(n_inputs=2, n_hidden=3, n_outputs=2, output="linear",
                                           biases=False), "float", "random"),
    "float-logistic-every-step-kappa-1": (dict(n_inputs=2, n_hidden=3, n_outputs=2,
                                               output="logistic", structural_curvature=1.0),
                                          "float", None),
}
GRU_ID_CONFIGURATIONS = [name for name, (_, kind, _) in GRU_CONFIGURATIONS.items()
                         if kind == "ids"]


class GRUProblem(SequenceProblem):
    """A GRU with parameters, a batch and two directions on (xp, dtype, device), their host
    copies, and the oracle of oracles/gru.py."""

    configurations, model_class = GRU_CONFIGURATIONS, arrayhf.GRU
    oracle_forward = staticmethod(oracle_gru.gru_pre_activations_and_net_output)
    oracle_structural = staticmethod(oracle_gru.gru_structural_product)
    n_steps, n_cases = GRU_STEPS, GRU_CASES

    def structural_units(self):
        """(GR19): the gates r, ζ (logistic) with 4κ, the candidate (tanh) with κ."""
        n, kappa = self.model.n_hidden, self.model.structural_curvature
        return (np.repeat([4 * kappa, 4 * kappa, kappa], n),
                np.repeat([False, False, True], n))


def gru_problem(name, xp, device, dtype="float64", seed=0):
    return GRUProblem(name, xp, device, dtype=dtype, seed=seed)


# Each registered model's test problem: (builder, its configurations). Cases of the recurrent
# models have (arguments, "ids" or "float" inputs, mask kind) configurations.
PROBLEMS = {
    "fnn": (fnn_problem, FNN_ARCHITECTURES),
    "rnn": (RNNProblem, RNN_CONFIGURATIONS),
    "mrnn": (MRNNProblem, MRNN_CONFIGURATIONS),
    "lstm": (LSTMProblem, LSTM_CONFIGURATIONS),
    "gru": (GRUProblem, GRU_CONFIGURATIONS),
}
_UNTESTED = [name for name in registry.names() if name not in PROBLEMS]
if _UNTESTED:
    raise LookupError(f"registered models without test problems in tests/problems.py: "
                      f"{_UNTESTED}")

CASES = {f"{model}/{name}": (PROBLEMS[model][0], name)
         for model in registry.names() for name in PROBLEMS[model][1]}
# every recurrent model's cases, and those of them that feed character ids
RECURRENT_CASES = [case for case in CASES if registry.entry(case.split("/")[0]).recurrent]
ID_CASES = [case for case in RECURRENT_CASES
            if PROBLEMS[case.split("/")[0]][1][case.split("/")[1]][1] == "ids"]


def make(case, xp, device, dtype="float64", seed=0, **options):
    """The problem of ``case`` ("model/configuration"); ``options`` (one_hot, ids_dtype) go to
    a recurrent model's problem."""
    builder, name = CASES[case]
    return builder(name, xp, device, dtype=dtype, seed=seed, **options)
