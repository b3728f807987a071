import dataclasses

import pytest
import torch

from sentiment_lstm.model import (
    FeatureTableLSTM,
    ModelConfig,
    SentimentLSTM,
    merge_ensemble,
    reverse_within_lengths,
)

VOCAB_SIZE = 50


def make_model(**overrides) -> SentimentLSTM:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=VOCAB_SIZE, embedding_dim=8, hidden_dim=6, **overrides
    )
    model = SentimentLSTM(config)
    model.eval()
    return model


def random_batch(lengths: list[int], generator: torch.Generator) -> torch.Tensor:
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(2, VOCAB_SIZE, (length,), generator=generator)
    return ids


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("lengths", [[1], [7], [3, 9, 1], [5, 5, 5, 5]])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_output_shape(bidirectional, num_layers, lengths, pooling):
    model = make_model(
        bidirectional=bidirectional, num_layers=num_layers, pooling=pooling
    )
    ids = random_batch(lengths, torch.Generator().manual_seed(1))

    logits = model(ids, torch.tensor(lengths))

    assert logits.shape == (len(lengths), 2)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_padding_invariance(bidirectional, num_layers, pooling):
    model = make_model(
        bidirectional=bidirectional, num_layers=num_layers, pooling=pooling
    )
    generator = torch.Generator().manual_seed(2)
    lengths = [4, 11, 1, 7, 30]
    batch = random_batch(lengths, generator)

    with torch.no_grad():
        together = torch.softmax(model(batch, torch.tensor(lengths)), dim=1)
        for row, length in enumerate(lengths):
            alone_ids = batch[row : row + 1, :length]
            alone = torch.softmax(model(alone_ids, torch.tensor([length])), dim=1)
            # extra padding beyond the batch's own width changes nothing either
            padded_ids = torch.nn.functional.pad(alone_ids, (0, 17))
            padded = torch.softmax(model(padded_ids, torch.tensor([length])), dim=1)
            torch.testing.assert_close(together[row], alone[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(padded[0], alone[0], atol=1e-6, rtol=0)


def test_padding_tokens_do_not_matter():
    model = make_model(bidirectional=True)
    ids = torch.tensor([[5, 6, 7, 0, 0]])
    garbage = torch.tensor([[5, 6, 7, 40, 41]])
    lengths = torch.tensor([3])

    with torch.no_grad():
        clean = model(ids, lengths)
        noisy = model(garbage, lengths)

    torch.testing.assert_close(clean, noisy, atol=1e-6, rtol=0)


def test_bidirectional_reads_backwards():
    # a review and its reverse must score differently with a backward LSTM
    model = make_model(bidirectional=True)
    forward_only = make_model(bidirectional=False)
    ids = torch.tensor([[3, 9, 14, 22]])
    reversed_ids = ids.flip(1)
    lengths = torch.tensor([4])

    with torch.no_grad():
        assert not torch.allclose(model(ids, lengths), model(reversed_ids, lengths))
        assert not torch.allclose(
            forward_only(ids, lengths), forward_only(reversed_ids, lengths)
        )


def test_reverse_within_lengths():
    index = reverse_within_lengths(torch.tensor([3, 1, 5]), 5)

    assert index.tolist() == [[2, 1, 0, 3, 4], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]]


def test_gradients_reach_every_parameter():
    model = make_model(bidirectional=True, num_layers=2)
    model.train()
    ids = random_batch([5, 3], torch.Generator().manual_seed(3))

    model(ids, torch.tensor([5, 3])).sum().backward()

    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_embedding_initialisation_is_small_uniform():
    model = make_model(embedding_init_range=0.05)
    weights = model.embedding.weight.detach()

    assert weights.abs().max() <= 0.05
    assert weights[model.config.pad_index].abs().sum() == 0


def test_embedding_dropout_only_in_training():
    model = make_model(embedding_dropout=0.5)
    ids = random_batch([6], torch.Generator().manual_seed(4))
    lengths = torch.tensor([6])

    with torch.no_grad():
        first = model(ids, lengths)
        second = model(ids, lengths)

    torch.testing.assert_close(first, second)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"pooling": "sum"}, "pooling"),
        ({"pad_index": VOCAB_SIZE}, "pad_index"),
        ({"pad_index": "0"}, "pad_index must be an integer"),
        ({"hidden_dim": True}, "hidden_dim"),
        ({"dropout": "0.5"}, "dropout"),
        ({"bidirectional": "yes"}, "bidirectional"),
    ],
)
def test_config_rejects_invalid_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(vocab_size=VOCAB_SIZE, **overrides)


def test_config_dict_round_trip():
    config = ModelConfig(vocab_size=VOCAB_SIZE, bidirectional=True, num_layers=2)

    assert ModelConfig.from_dict(config.to_dict()) == config


def test_config_rejects_missing_keys():
    values = dataclasses.asdict(ModelConfig(vocab_size=VOCAB_SIZE))
    del values["vocab_size"]

    with pytest.raises(ValueError, match="missing model config keys: vocab_size"):
        ModelConfig.from_dict(values)


def test_config_rejects_unknown_keys():
    values = dataclasses.asdict(ModelConfig(vocab_size=VOCAB_SIZE))
    values["attention"] = True

    with pytest.raises(ValueError, match="attention"):
        ModelConfig.from_dict(values)


def test_feature_table_rows_are_inputs():
    torch.manual_seed(0)
    table = torch.randn(10, 8)
    table[0] = 0
    config = ModelConfig(vocab_size=1, embedding_dim=8, hidden_dim=6)
    model = FeatureTableLSTM(config, table).eval()
    ids = torch.tensor([[3, 4, 5]])

    with torch.no_grad():
        embedded = model.embed(ids)
        other = model(torch.tensor([[3, 4, 6]]), torch.tensor([3]))
        logits = model(ids, torch.tensor([3]))

    torch.testing.assert_close(embedded[0], table[3:6])
    assert not torch.allclose(logits, other)


def test_feature_table_not_in_state_dict():
    config = ModelConfig(vocab_size=1, embedding_dim=8, hidden_dim=6)
    model = FeatureTableLSTM(config, torch.zeros(100, 8))

    names = set(model.state_dict())

    assert "table" not in names
    assert names == set(SentimentLSTM(config).state_dict())


def test_feature_table_half_precision():
    config = ModelConfig(vocab_size=1, embedding_dim=4, hidden_dim=3)
    model = FeatureTableLSTM(config, torch.ones(5, 4, dtype=torch.float16))

    assert model.embed(torch.tensor([[1, 2]])).dtype == torch.float32


def test_feature_table_width_must_match():
    config = ModelConfig(vocab_size=1, embedding_dim=8)

    with pytest.raises(ValueError, match="embedding_dim"):
        FeatureTableLSTM(config, torch.zeros(10, 5))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_merged_ensemble_averages_logits(bidirectional, num_layers, pooling):
    members = []
    for seed in range(3):
        member = make_model(
            bidirectional=bidirectional, num_layers=num_layers, pooling=pooling
        )
        with torch.no_grad():
            for parameter in member.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.3, alpha=seed + 1)
        members.append(member)
    lengths = [7, 3, 1, 5]
    ids = random_batch(lengths, torch.Generator().manual_seed(5))

    merged = merge_ensemble(members)

    with torch.no_grad():
        expected = torch.stack([m(ids, torch.tensor(lengths)) for m in members])
        logits = merged(ids, torch.tensor(lengths))
    assert merged.config.hidden_dim == 18
    assert merged.config.embedding_dim == 24
    torch.testing.assert_close(logits, expected.mean(0), atol=1e-6, rtol=0)


def test_merged_feature_tables_share_input():
    table = torch.randn(12, 8)
    table[0] = 0
    config = ModelConfig(vocab_size=1, embedding_dim=8, hidden_dim=4, pooling="max")
    members = []
    for seed in range(2):
        torch.manual_seed(seed)
        members.append(FeatureTableLSTM(config, table).eval())
    ids = torch.tensor([[1, 2, 3], [4, 5, 0]])
    lengths = torch.tensor([3, 2])

    merged = merge_ensemble(members)

    with torch.no_grad():
        expected = torch.stack([m(ids, lengths) for m in members]).mean(0)
        logits = merged(ids, lengths)
    assert isinstance(merged, FeatureTableLSTM)
    assert merged.config.embedding_dim == 8
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)


def test_merge_rejects_different_shapes():
    with pytest.raises(ValueError, match="member 1"):
        merge_ensemble([make_model(), make_model(bidirectional=True)])
