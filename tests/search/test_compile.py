"""`train.compile`: the study key, and a compiled trainer that trains as the eager one does.

Whole nets compile with backend="aot_eager" here (inductor takes minutes on 2 cores); it runs the
same graphs dynamo and AOTAutograd capture for inductor, so graph breaks and recompiles show alike.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch._dynamo.utils import counters

from search.data import DataSplits, load_data
from search.study import DataConfig, StudyError, load_study, resolve_trial
from search.train_loop import Trainer, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def few_digits() -> DataSplits:
    d = load_data(DataConfig("digits"))
    return DataSplits("digits", d.x_train[:256], d.y_train[:256], d.x_val[:128], d.y_val[:128],
                      d.x_test[:64], d.y_test[:64], 8, 1, 10)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def gsa_spec(**train: object):
    """The quickstart's gsa_resnet_tiny trial (seed 0) with `train` changed."""
    spec = resolve_trial(load_study("quickstart"), variant="both", seed=0, params={})
    return replace(spec, train=replace(spec.train, **train))


def test_train_compile_is_a_study_key_off_by_default():
    assert load_study("quickstart").train.compile is False
    assert load_study("quickstart", {"train.compile": True}).train.compile is True
    with pytest.raises(StudyError, match=r"train\.compile.*'yes please'.*true or false"):
        load_study("quickstart", {"train.compile": "yes please"})


def test_compiled_trainer_matches_eager_and_shares_checkpoints(few_digits, tmp_path):
    eager = Trainer(gsa_spec(epochs=2, warmup_epochs=0), few_digits)
    compiled = Trainer(gsa_spec(epochs=2, warmup_epochs=0, compile=True), few_digits, compile_backend="aot_eager")
    assert compiled.net is not compiled.model
    # Checkpoints hold the plain module's keys: a compiled trial resumes an eager one and back.
    assert list(compiled.model.state_dict()) == list(eager.model.state_dict())
    first_eager, first_compiled = eager.train_epoch(), compiled.train_epoch()
    assert counters["stats"]["unique_graphs"] >= 1                   # it did compile
    assert first_compiled.train_loss == pytest.approx(first_eager.train_loss, rel=1e-4)
    assert first_compiled.val_acc == pytest.approx(first_eager.val_acc, abs=1 / 128)
    for a, b in zip(compiled.model.parameters(), eager.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    path = save_checkpoint(compiled, tmp_path / "state.pt")
    resumed = load_checkpoint(Trainer(gsa_spec(epochs=2, warmup_epochs=0), few_digits), path)
    assert resumed.train_epoch().train_loss == pytest.approx(compiled.train_epoch().train_loss, rel=1e-4)


def test_a_second_trial_of_the_same_net_reuses_the_compiled_graphs(few_digits):
    spec = gsa_spec(epochs=1, warmup_epochs=0, compile=True)
    Trainer(spec, few_digits, compile_backend="aot_eager").train_epoch()
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 2                                               # train and eval mode
    other_seed = replace(spec, seed=1)                               # new weights, same architecture
    result = Trainer(other_seed, few_digits, compile_backend="aot_eager").train_epoch()
    assert counters["stats"]["unique_graphs"] == graphs              # nothing compiled again
    assert result.train_loss > 0


def test_a_compiling_trainer_lets_a_worker_keep_many_architectures(few_digits):
    import torch._dynamo.config as dynamo_config

    from search.worker import RECOMPILE_LIMIT

    saved = dynamo_config.recompile_limit
    try:
        dynamo_config.recompile_limit = 8                             # torch's default
        Trainer(gsa_spec(epochs=1, compile=True), few_digits, compile_backend="aot_eager")
        assert dynamo_config.recompile_limit == RECOMPILE_LIMIT
    finally:
        dynamo_config.recompile_limit = saved


@pytest.mark.gpu
def test_inductor_compiled_gsa_net_trains_on_cuda_in_bf16_like_eager(few_digits):
    spec = gsa_spec(epochs=2, warmup_epochs=0, amp="bf16")
    eager = [Trainer(spec, few_digits, device="cuda").train_epoch() for _ in range(1)]
    compiled_trainer = Trainer(replace(spec, train=replace(spec.train, compile=True)), few_digits, device="cuda")
    compiled = [compiled_trainer.train_epoch() for _ in range(2)]
    assert all(r.train_loss == r.train_loss for r in compiled)        # finite, not NaN
    assert compiled[0].train_loss == pytest.approx(eager[0].train_loss, rel=5e-2)
