"""The rules of one HF iteration that derivations/cg-and-damping.md states, each checked against an
independent computation: the preconditioner (H3), the walk-back of backtracking (H4), the Armijo
line search and its limit (H5), the count weighting of batches (H1), the damped model of ρ's
denominator (D1) with (H2), and the backtracking batches.

CG's calls are watched by wrapping ``conjugate_gradient`` where the optimizer looks it up; every
expected value is computed here from the model's public passes (loss, gradient, Gauss-Newton and
structural products) on host copies of the data, not from the optimizer's helpers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

import arrayhf
from arrayhf import backend
from arrayhf.data.batch import Batch
from arrayhf.hf import backtracking, phases
from arrayhf.hf.optimizer import HF, HFConfig

from datasets import N_CLASSES, N_FEATURES, blob_arrays
from helpers import host, relative_error


class Batches:
    """Named batches in the data-object protocol, with the host arrays kept for the sums here."""

    def __init__(self, xp, device, host_batches, *, case_axis=0):
        self.xp, self.device, self.case_axis = xp, device, case_axis
        self.host = host_batches     # id -> (inputs, targets, mask or None)
        self._batches = {key: self._make(*arrays) for key, arrays in host_batches.items()}
        self.train_batches = [key for key in host_batches if key != "test"]
        self.test_batches = ["test"]

    def _make(self, inputs, targets, mask):
        to_xp = lambda a: backend.from_host(a, self.xp, device=self.device)  # noqa: E731
        return Batch(to_xp(inputs), to_xp(targets), None if mask is None else to_xp(mask))

    def batch(self, batch_id):
        return self._batches[batch_id]

    def forget(self):
        """Fixed data."""

    def zero_one_error(self, batch, predictions):
        return None

    def union(self, ids):
        """One batch holding every case of the batches ``ids`` (no mask counts as all ones)."""
        parts = [self.host[key] for key in ids]
        inputs = np.concatenate([p[0] for p in parts], axis=self.case_axis)
        targets = np.concatenate([p[1] for p in parts], axis=self.case_axis)
        mask = np.concatenate([np.ones(p[1].shape[:-1]) if p[2] is None else p[2]
                               for p in parts], axis=self.case_axis)
        return self._make(inputs, targets, mask)


def blob_batches(xp, device, names=("train0", "train1", "train2"), n_cases=200, seed=0):
    rng = np.random.default_rng(seed)
    centers = 2.0 * rng.standard_normal((N_CLASSES, N_FEATURES))
    batches = {name: (*blob_arrays(rng, centers, n_cases), None) for name in names}
    batches["test"] = (*blob_arrays(rng, centers, 50), None)
    return Batches(xp, device, batches)


def classifier():
    return arrayhf.FNN([N_FEATURES, 16, N_CLASSES], hidden="tanh", output="softmax")


def objective(model, dataset, params, ids, weight_cost=0.0):
    """f of (H1), computed as the mean loss over every unmasked output of one union batch."""
    value = float(model.loss(params, dataset.union(ids)))
    return value + 0.5 * weight_cost * float(np.sum(host(params) ** 2))


def gradient(model, dataset, params, ids, weight_cost=0.0):
    """g of (H1), from the union batch."""
    return model.gradient(params, dataset.union(ids)) + weight_cost * params


def dot(a, b) -> float:
    return float(np.sum(host(a) * host(b)))


def walk_back(values) -> int:
    """(H4): from the last index backwards while the value strictly decreases."""
    chosen = len(values) - 1
    for index in range(len(values) - 2, -1, -1):
        if not values[index] < values[chosen]:
            break
        chosen = index
    return chosen


@pytest.fixture
def cg_runs(monkeypatch):
    """Every call HF makes to conjugate_gradient: its operator, b, x0, keywords and result."""
    runs = []
    real = phases.conjugate_gradient

    def watched(operator, b, x0=None, **keywords):
        result = real(operator, b, x0, **keywords)
        runs.append(SimpleNamespace(operator=operator, b=b, x0=x0, keywords=keywords,
                                    result=result))
        return result

    monkeypatch.setattr(phases, "conjugate_gradient", watched)
    return runs


def chosen_direction(record, cg):
    """The kept iterate x_{i_s} whose step the record names as chosen."""
    matches = [x for step, x in cg.iterates if step == record["chosen_iterate"]]
    assert len(matches) == 1
    return matches[0]


# -- (H3) ------------------------------------------------------------------------------------
def masked_blobs(xp, device):
    """Two batches of 60 cases with 0/1 masks of different sums, and a test batch."""
    rng = np.random.default_rng(3)
    centers = 2.0 * rng.standard_normal((N_CLASSES, N_FEATURES))
    batches = {}
    for name, kept in (("train0", 45), ("train1", 20)):
        inputs, targets = blob_arrays(rng, centers, 60)
        mask = np.zeros(60)
        mask[rng.permutation(60)[:kept]] = 1.0
        batches[name] = (inputs, targets, mask)
    batches["test"] = (*blob_arrays(rng, centers, 30), None)
    return Batches(xp, device, batches)


def empirical_fisher_diagonal(model, dataset, params, batch_id, xp, device):
    """F of (H3) from its definition: (1/N) Σ_p m_p g_p ⊙ g_p, with each g_p = ∇ℓ_p taken as the
    gradient of a batch holding case p alone (not from per_case_squared_gradient)."""
    inputs, targets, mask = dataset.host[batch_id]
    total, count = np.zeros(model.n_params), 0.0
    for case in range(inputs.shape[0]):
        if mask[case] == 0.0:
            continue
        single = Batch(backend.from_host(inputs[case:case + 1], xp, device=device),
                       backend.from_host(targets[case:case + 1], xp, device=device))
        case_gradient = host(model.gradient(params, single))
        total += mask[case] * case_gradient * case_gradient
        count += mask[case]
    return total / count


def test_preconditioner_is_martens_diagonal_and_cg_divides_by_it(xp, device, cg_runs):
    """(H3): CG gets M = (F + λ + w)^(3/4), F the empirical-Fisher diagonal of the iteration's
    curvature batch c_t (H2), built here case by case; and CG's first step is the one (C1)-(C3)
    and (C0b) give with y_0 = r_0 / M for that M, computed with the model's own products."""
    dataset = masked_blobs(xp, device)
    model = classifier()
    weight_cost = 1e-3
    optimizer = HF(model, dataset, damping=0.5, weight_cost=weight_cost, preconditioner=True,
                   max_cg_iter=15, progress=False, test_every=0)
    for iteration in (1, 2):
        params, damping = optimizer.params, optimizer.damping
        optimizer.step()
        cg = cg_runs[-1]
        curvature_id = dataset.train_batches[(iteration - 1) % 2]
        fisher = empirical_fisher_diagonal(model, dataset, params, curvature_id, xp, device)
        shift = damping + weight_cost
        expected = (fisher + shift) ** 0.75
        assert relative_error(cg.keywords["preconditioner"], expected) <= 1e-12
        # F is far from negligible here, so the identity-like (λ + w)^(3/4) would fail the above
        assert relative_error(np.full_like(expected, shift ** 0.75), expected) > 0.1

        # the first CG step, from the start CG used, with M⁻¹ applied as a division (C3)
        batch = dataset.batch(curvature_id)
        b = -gradient(model, dataset, params, dataset.train_batches, weight_cost)
        assert relative_error(cg.b, b) <= 1e-12

        def damped(v, params=params, batch=batch, shift=shift):   # (H2), μ = 0
            return model.gauss_newton_product(params, batch, v) + shift * v

        preconditioner = backend.from_host(expected, xp, device=device)
        start = (xp.zeros_like(b) if cg.x0 is None or cg.result.restarted_from_zero
                 else cg.x0)
        residual = b - damped(start)
        y = residual / preconditioner
        start_value = 0.5 * dot(start, damped(start)) - dot(b, start)
        first_value = start_value - 0.5 * dot(residual, y) ** 2 / dot(y, damped(y))   # (C0b)
        assert math.isclose(cg.result.model_values[1], first_value, rel_tol=1e-10)
        plain_value = start_value - 0.5 * dot(residual, residual) ** 2 / dot(residual,
                                                                            damped(residual))
        assert not math.isclose(plain_value, first_value, rel_tol=1e-3)


# -- (H4) ------------------------------------------------------------------------------------
def test_backtracking_takes_the_first_local_minimum_walking_back(xp, device, cg_runs,
                                                                 monkeypatch):
    """(H4): the objective at the kept iterates is replaced by a chosen sequence whose global
    minimum (the first iterate), first local minimum walking back (the sixth) and a tie (the
    sixth and fifth) all point at different iterates. The step must be the sixth, found with
    m − s + 2 = 3 evaluations, and ρ's numerator must reuse its value (K = B)."""
    dataset = blob_batches(xp, device)
    optimizer = HF(classifier(), dataset, damping=0.1, max_cg_iter=20, cg_epsilon=0.0,
                   progress=False, test_every=0)
    params = optimizer.params
    real_objective = optimizer.batch_objective.value
    start = real_objective(params, dataset.train_batches)
    #            steps 5    7    9    11   15   19   20
    decreases = [0.9, 0.1, 0.2, 0.3, 0.4, 0.4, 0.2]
    evaluated = []

    def scripted_objective(point, batch_ids):
        for index, (_, x) in enumerate(cg_runs[-1].result.iterates):
            if np.array_equal(host(point), host(params + x)):
                evaluated.append(index)
                return start - decreases[index]
        return real_objective(point, batch_ids)

    monkeypatch.setattr(optimizer.batch_objective, "value", scripted_objective)
    record = optimizer.step()
    cg = cg_runs[-1].result
    assert [step for step, _ in cg.iterates] == [5, 7, 9, 11, 15, 19, 20]
    assert evaluated == [6, 5, 4]
    assert record["chosen_iterate"] == 19
    assert walk_back([start - d for d in decreases]) == 5   # this file's (H4) agrees
    assert math.isclose(record["rho_numerator"], -0.4, rel_tol=1e-9)
    assert record["line_search_step"] == 1.0
    np.testing.assert_array_equal(host(optimizer.params), host(params + cg.iterates[5][1]))


def test_release_backtracking_takes_the_lowest_held_value(xp, device, cg_runs, monkeypatch):
    """(H4r): CG keeps the iterates of steps 1, 11, 21, … and the last; each is scored on the
    release's held batch (the first training batch other than the curvature batch), and the
    lowest wins even where (H4)'s walk-back would stop earlier; ρ's numerator is then
    f_B(θ + p) − f_B(θ), on the gradient batches."""
    dataset = blob_batches(xp, device)
    optimizer = HF(classifier(), dataset, damping=0.1, max_cg_iter=25, cg_epsilon=0.0,
                   curvature_batches=["train1"], backtracking="release", progress=False,
                   test_every=0)
    params = optimizer.params
    real_objective = optimizer.batch_objective.value
    start = real_objective(params, dataset.train_batches)
    #            steps 1    11   21   25
    decreases = [0.5, 0.1, 0.3, 0.2]
    scored_on = []

    def scripted_objective(point, batch_ids):
        for index, (_, x) in enumerate(cg_runs[-1].result.iterates):
            if np.array_equal(host(point), host(params + x)) and batch_ids != \
                    dataset.train_batches:
                scored_on.append(list(batch_ids))
                return start - decreases[index]
        return real_objective(point, batch_ids)

    monkeypatch.setattr(optimizer.batch_objective, "value", scripted_objective)
    record = optimizer.step()
    cg = cg_runs[-1].result
    assert [step for step, _ in cg.iterates] == [1, 11, 21, 25]
    assert scored_on == [["train0"]] * 4            # the held batch, not the curvature batch
    assert walk_back([start - d for d in decreases]) == 2   # (H4) would take step 21
    assert record["chosen_iterate"] == 1
    direction = cg.iterates[0][1]
    numerator = real_objective(params + direction, dataset.train_batches) - start
    assert math.isclose(record["rho_numerator"], numerator, rel_tol=1e-10)


def test_release_backtracking_on_one_batch_scores_the_curvature_batch(xp, device, cg_runs):
    """(H4r) with a single training batch: the held batch is the curvature batch itself (the
    release's fallback), and ``cg_eval_every`` sets the scored steps."""
    dataset = blob_batches(xp, device, names=("train0",))
    optimizer = HF(classifier(), dataset, damping=0.1, max_cg_iter=12, cg_epsilon=0.0,
                   backtracking="release", cg_eval_every=4, progress=False, test_every=0)
    optimizer.step()
    assert [step for step, _ in cg_runs[-1].result.iterates] == [1, 5, 9, 12]
    assert backtracking.scoring_batches("release", None, ["train0"], ["train0"],
                                        "train0") == ["train0"]


def still_batches(model) -> dict:
    """Host batches train0, train1, test of blobs, and "still", whose (soft) targets are the
    model's predictions at its θ₀ = model.init(0): f on it is at its minimum there."""
    rng = np.random.default_rng(0)
    centers = 2.0 * rng.standard_normal((N_CLASSES, N_FEATURES))
    start_params = model.init(0, xp=backend.namespace("numpy"))
    batches = {}
    for name in ("train0", "train1", "still", "test"):
        inputs, targets = blob_arrays(rng, centers, 200)
        if name == "still":
            targets = host(model.predict(start_params, inputs))
        batches[name] = (inputs, targets, None)
    return batches


def test_line_search_judges_f_on_line_search_batches(xp, device):
    """(H5) on L ≠ B: a batch whose (soft) targets are the starting predictions is at its
    minimum at θ₀, so every step length raises f there and the step is rejected (θ kept, λ
    boosted), though the same iteration on the gradient batches alone takes a step; the record's
    objective stays f_B(θ)."""
    model = classifier()
    batches = still_batches(model)
    settings = {"damping": 0.01, "max_cg_iter": 30, "grad_batches": ["train0", "train1"],
                "curvature_batches": ["train0"], "line_search": "decrease", "progress": False,
                "test_every": 0}
    plain = HF(model, Batches(xp, device, batches), **settings)
    assert plain.step()["line_search_step"] > 0
    dataset = Batches(xp, device, batches)
    judged = HF(model, dataset, line_search_batches=["still"], **settings)
    params = judged.params
    record = judged.step()
    assert record["line_search_step"] == 0.0
    np.testing.assert_array_equal(host(judged.params), host(params))
    assert record["next_damping"] >= 1.5 * 0.01
    assert math.isclose(record["objective"],
                        objective(model, dataset, params, ["train0", "train1"]), rel_tol=1e-10)


def test_backtracking_scores_the_iterates_on_backtrack_batches(xp, device, cg_runs):
    """(H4) with K ≠ B: the walk-back runs on f_K, here a batch whose (soft) targets are the
    starting predictions, and picks another iterate than it would on the gradient batches; ρ's
    numerator is then f_B(θ + p) − f_B(θ), on the gradient batches ((D1) after (H4))."""
    model = classifier()
    batches = still_batches(model)
    dataset = Batches(xp, device, batches)
    grad_ids, backtrack_ids = ["train0", "train1"], ["still"]
    optimizer = HF(model, dataset, damping=0.01, max_cg_iter=30, cg_epsilon=0.0,
                   grad_batches=grad_ids, curvature_batches=["train0"],
                   backtrack_batches=backtrack_ids, progress=False, test_every=0)
    params = optimizer.params
    record = optimizer.step()
    cg = cg_runs[-1].result
    steps = [step for step, _ in cg.iterates]
    on_k = [objective(model, dataset, params + x, backtrack_ids) for _, x in cg.iterates]
    on_b = [objective(model, dataset, params + x, grad_ids) for _, x in cg.iterates]
    assert walk_back(on_k) != walk_back(on_b)   # the case tells the two apart
    assert record["chosen_iterate"] == steps[walk_back(on_k)]
    direction = chosen_direction(record, cg)
    numerator = (objective(model, dataset, params + direction, grad_ids)
                 - objective(model, dataset, params, grad_ids))
    assert math.isclose(record["rho_numerator"], numerator, rel_tol=1e-10)


# -- (H5) ------------------------------------------------------------------------------------
class RecordingFNN(arrayhf.FNN):
    """An FNN that keeps a host copy of every parameter vector its loss is evaluated at."""

    def __init__(self):
        super().__init__([N_FEATURES, 16, N_CLASSES], hidden="tanh", output="softmax")
        self.points = []

    def loss(self, params, batch, cache=None):
        self.points.append(host(params))
        return super().loss(params, batch, cache)


ACCEPTED = 4   # in the case below Armijo accepts t = 0.8⁴, the fifth try


def armijo_case(xp, device, cg_runs, **settings):
    """Blobs at λ = 0.01 and 20 CG steps: the first HF step overshoots (ρ = −∞), and Armijo
    shrinks it to t = 0.8⁴."""
    dataset = blob_batches(xp, device)
    model = RecordingFNN()
    optimizer = HF(model, dataset, damping=0.01, max_cg_iter=20, progress=False,
                   test_every=0, **settings)
    params = optimizer.params
    record = optimizer.step()
    direction = chosen_direction(record, cg_runs[-1].result)
    return SimpleNamespace(dataset=dataset, model=model, optimizer=optimizer, params=params,
                           record=record, direction=direction)


def step_sizes(count, rate=0.8):
    """1, r, r², … as the line search forms them (repeated products)."""
    sizes, size = [], 1.0
    for _ in range(count):
        sizes.append(size)
        size *= rate
    return sizes


def line_search_points(case, count):
    """The tries t_j = r^j, j = 1 … count − 1, at which the model's loss was evaluated."""
    theta, direction = host(case.params), host(case.direction)
    tried = []
    for j, size in enumerate(step_sizes(count)[1:], start=1):
        point = theta + size * direction
        if any(np.allclose(seen, point, rtol=0.0, atol=1e-13) for seen in case.model.points):
            tried.append(j)
    return tried


@pytest.mark.parametrize(("armijo_c", "accepted"), [(1e-2, ACCEPTED), (0.1, ACCEPTED + 1)])
def test_armijo_accepts_the_first_step_size_that_passes(xp, device, cg_runs, armijo_c,
                                                         accepted):
    """(H5): every t = 0.8ʲ before the accepted one fails f(θ + tp) ≤ f(θ) + c t gᵀp and the
    accepted one passes (f and g computed here); the step taken is θ + t p, and no smaller t is
    tried. With c = 0.1 the try t = 0.8⁴ lowers f but not by c t |gᵀp|, and is refused: the
    test is Armijo's, not "any decrease"."""
    case = armijo_case(xp, device, cg_runs, armijo_c=armijo_c)
    ids = case.dataset.train_batches
    start = objective(case.model, case.dataset, case.params, ids)
    slope = dot(gradient(case.model, case.dataset, case.params, ids), case.direction)
    assert slope < 0
    sizes = step_sizes(accepted + 1)
    values = [objective(case.model, case.dataset, case.params + t * case.direction, ids)
              for t in sizes]
    margins = [value - (start + armijo_c * t * slope) for t, value in zip(sizes, values)]
    assert all(margin > 1e-4 for margin in margins[:accepted]), margins   # these fail (H5)
    assert margins[accepted] < -1e-4, margins                             # this one passes
    if armijo_c == 0.1:
        assert values[accepted - 1] < start - 1e-2   # refused although it lowers f
    assert case.record["line_search_step"] == sizes[accepted]
    taken = case.params + sizes[accepted] * case.direction
    assert relative_error(case.optimizer.params, taken) <= 1e-15
    assert math.isclose(case.record["objective"], values[accepted], rel_tol=1e-12)
    assert line_search_points(case, 60) == list(range(1, accepted + 1))


@pytest.mark.parametrize("max_line_search", [ACCEPTED, ACCEPTED + 1])
def test_max_line_search_caps_the_armijo_tries(xp, device, cg_runs, max_line_search):
    """(H5) with ``max_line_search`` = n: only t = 1 … 0.8ⁿ⁻¹ are tried (t = 1 reuses ρ's
    value, so n − 1 evaluations). The case above needs t = 0.8⁴, the fifth try: with n = 4 the
    step is rejected (θ kept, λ' ≥ 3/2 λ); with n = 5 it is accepted."""
    case = armijo_case(xp, device, cg_runs, max_line_search=max_line_search)
    assert line_search_points(case, 60) == list(range(1, max_line_search))
    if max_line_search == ACCEPTED:
        assert case.record["line_search_step"] == 0.0
        np.testing.assert_array_equal(host(case.optimizer.params), host(case.params))
        assert case.optimizer.damping >= 1.5 * 0.01
    else:
        assert case.record["line_search_step"] == step_sizes(ACCEPTED + 1)[ACCEPTED]


def test_max_line_search_defaults_to_each_modes_source():
    """(H5): ``max_line_search=None`` means the mode's own limit, Martens' 60 Armijo tries or the
    2011 release's 50; a number applies to both modes."""
    assert HFConfig().line_search_tries == 60
    assert HFConfig(line_search="decrease").line_search_tries == 50
    assert HFConfig(line_search="decrease", max_line_search=7).line_search_tries == 7
    assert HFConfig(max_line_search=7).line_search_tries == 7
    for bad in (0, True, 2.0):
        with pytest.raises((TypeError, ValueError), match="max_line_search"):
            HFConfig(max_line_search=bad)


@pytest.mark.parametrize("extra", [0, 1])
def test_max_line_search_caps_the_decrease_tries_too(xp, device, cg_runs, extra):
    """(H5) with ``line_search="decrease"``: the first t = 0.8ʲ that lowers f (j = D, from f
    computed here) is taken, within the release's 50 tries by default; and ``max_line_search`` = n
    caps the tries at t = 1 … 0.8ⁿ⁻¹ as it does for Armijo: n = D rejects the step (θ kept,
    λ' ≥ 3/2 λ), n = D + 1 takes t = 0.8ᴰ."""
    probe = armijo_case(xp, device, cg_runs, line_search="decrease")
    ids = probe.dataset.train_batches
    start = objective(probe.model, probe.dataset, probe.params, ids)
    sizes = step_sizes(50)
    first = next(j for j, t in enumerate(sizes)
                 if objective(probe.model, probe.dataset, probe.params + t * probe.direction,
                              ids) < start)
    assert first >= 2   # a cap below it is a cap above the first try
    assert probe.record["line_search_step"] == sizes[first]

    case = armijo_case(xp, device, cg_runs, line_search="decrease", max_line_search=first + extra)
    assert line_search_points(case, 60) == list(range(1, first + extra))
    if extra == 0:
        assert case.record["line_search_step"] == 0.0
        np.testing.assert_array_equal(host(case.optimizer.params), host(case.params))
        assert case.optimizer.damping >= 1.5 * 0.01
    else:
        assert case.record["line_search_step"] == sizes[first]


# -- (H1) ------------------------------------------------------------------------------------
def test_batches_are_weighted_by_their_counted_outputs(xp, device, cg_runs):
    """(H1): three batches of 40 cases counting 40 (no mask), 8 and 25 outputs. f(θ) and g are
    the mean over all 73 counted outputs (one union batch), plus ½ w‖θ‖² and w θ, not the plain
    mean of the three batch means; HF's CG gets b = −g."""
    rng = np.random.default_rng(7)
    centers = 2.0 * rng.standard_normal((N_CLASSES, N_FEATURES))
    batches = {}
    for name, kept in (("train0", None), ("train1", 8), ("train2", 25)):
        inputs, targets = blob_arrays(rng, centers, 40)
        mask = None
        if kept is not None:
            mask = np.zeros(40)
            mask[rng.permutation(40)[:kept]] = 1.0
        batches[name] = (inputs, targets, mask)
    batches["train1"][1][:] = np.roll(batches["train1"][1], 1, axis=1)  # a high-loss batch
    batches["test"] = (*blob_arrays(rng, centers, 20), None)
    dataset = Batches(xp, device, batches)
    model, weight_cost = classifier(), 1e-3
    optimizer = HF(model, dataset, damping=1.0, weight_cost=weight_cost, max_cg_iter=10,
                   progress=False, test_every=0)
    params, ids = optimizer.params, dataset.train_batches
    expected_f = objective(model, dataset, params, ids, weight_cost)
    expected_g = gradient(model, dataset, params, ids, weight_cost)

    value, grad = optimizer.batch_objective.value_and_gradient(params, ids)
    assert math.isclose(value, expected_f, rel_tol=1e-12)
    assert math.isclose(optimizer.batch_objective.value(params, ids), expected_f, rel_tol=1e-12)
    assert relative_error(grad, expected_g) <= 1e-12

    penalty = 0.5 * weight_cost * dot(params, params)
    plain_f = np.mean([float(model.loss(params, dataset.batch(i))) for i in ids]) + penalty
    plain_g = sum(host(model.gradient(params, dataset.batch(i))) for i in ids) / 3
    assert not math.isclose(plain_f, expected_f, rel_tol=1e-2)
    assert relative_error(plain_g + weight_cost * host(params), expected_g) > 1e-2

    optimizer.step()
    assert relative_error(cg_runs[-1].b, -expected_g) <= 1e-12


# -- (D1) with (H2) --------------------------------------------------------------------------
def rnn_batches(xp, device):
    """Time-major sequences (T = 6, 2 inputs, 2 outputs) with random 0/1 masks."""
    rng = np.random.default_rng(11)
    batches = {}
    for name, n in (("train0", 12), ("train1", 9), ("test", 5)):
        mask = (rng.uniform(size=(6, n)) < 0.6).astype(float)
        mask[-1] = 1.0
        batches[name] = (rng.standard_normal((6, n, 2)), rng.standard_normal((6, n, 2)), mask)
    return Batches(xp, device, batches, case_axis=1)


PROBLEMS = {
    "fnn": (classifier, blob_batches, 0.0),
    "rnn-structural": (lambda: arrayhf.RNN(2, 5, 2, hidden="tanh", output="linear"),
                       rnn_batches, 0.3),
}


@pytest.mark.parametrize("rho_model", ["damped", "undamped"])
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_rho_denominator_is_the_chosen_quadratic_model(xp, device, cg_runs, problem, rho_model):
    """(D1): ρ's denominator is gᵀp + ½ pᵀBp at the chosen p. With ``rho_model="damped"`` B is
    (H2)'s A = G + λμ S + (λ + w) I, so the denominator is φ(p), which is also CG's own model
    value at the chosen iterate (C5); "undamped" drops ½λ‖p‖² + ½λμ pᵀSp. G and S are the
    model's separate products on the curvature batch c_t, for two iterations (warm start)."""
    make_model, make_data, mu = PROBLEMS[problem]
    model, dataset, weight_cost = make_model(), make_data(xp, device), 1e-3
    optimizer = HF(model, dataset, damping=1.0, weight_cost=weight_cost, rho_model=rho_model,
                   structural_damping_mu=mu, max_cg_iter=30, progress=False, test_every=0)
    ids = dataset.train_batches
    for iteration in (1, 2):
        params, damping = optimizer.params, optimizer.damping
        record = optimizer.step()
        cg = cg_runs[-1].result
        p = chosen_direction(record, cg)
        batch = dataset.batch(ids[(iteration - 1) % len(ids)])
        slope = dot(gradient(model, dataset, params, ids, weight_cost), p)
        curvature = dot(p, model.gauss_newton_product(params, batch, p))
        structural = dot(p, model.structural_damping_product(params, batch, p)) if mu else 0.0
        squared = dot(p, p)
        phi = slope + 0.5 * (curvature + damping * mu * structural
                             + (damping + weight_cost) * squared)
        damping_part = 0.5 * damping * (squared + mu * structural)
        assert damping_part > 1e-3 * abs(phi)   # large enough to tell the two models apart
        assert math.isclose(cg.model_values[record["chosen_iterate"]], phi, rel_tol=1e-8)
        expected = phi if rho_model == "damped" else phi - damping_part
        assert math.isclose(record["rho_denominator"], expected, rel_tol=1e-10)
        if record["rho"] not in (-math.inf, 0.0):
            assert math.isclose(record["rho"], record["rho_numerator"] / expected,
                                rel_tol=1e-12)
