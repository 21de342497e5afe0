"""Concept embeddings from concept names through a local sentence-embedding model (issue 12 item 1)."""

from __future__ import annotations

import numpy as np
import pytest

from brainfm.downstream.retrieval.text_embeddings import embed_concept_names
from brainfm.errors import ConfigError

pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed (extra 'text')")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny static-embedding sentence-transformers model saved to a folder (nothing downloaded)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    words = ["[UNK]", "[PAD]", "this", "picture", "is", "aircraft", "carrier", "dog", "cat"]
    tokenizer = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    weights = np.random.default_rng(0).standard_normal((len(words), 12)).astype(np.float32)
    folder = tmp_path_factory.mktemp("text_model")
    SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu").save(str(folder))
    return folder, words, weights


def test_concept_names_are_embedded_from_the_template(model_folder):
    folder, words, weights = model_folder
    embeddings = embed_concept_names(["dog", "aircraft_carrier", "dog", "cat"], str(folder))
    assert embeddings.ids == ["dog", "aircraft_carrier", "cat"] and embeddings.features.shape == (3, 12)
    np.testing.assert_allclose(np.linalg.norm(embeddings.features, axis=1), 1.0, rtol=1e-5)
    # a static model averages the word vectors of "This picture is aircraft carrier" (underscore -> space;
    # the case-sensitive toy vocabulary reads "This" as unknown)
    expected = weights[[words.index(w) for w in ("[UNK]", "picture", "is", "aircraft", "carrier")]].mean(axis=0)
    np.testing.assert_allclose(embeddings.features[1], expected / np.linalg.norm(expected), rtol=1e-4, atol=1e-6)
    other = embed_concept_names(["dog"], str(folder), template="{concept}")
    assert not np.allclose(other.features[0], embeddings.features[0])


def test_a_model_that_is_not_local_is_refused_without_downloading(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="never downloads at run time.*huggingface-cli download no-such/model"):
        embed_concept_names(["dog"], "no-such/model")
    with pytest.raises(ConfigError, match="not a saved sentence-transformers model"):
        embed_concept_names(["dog"], str(tmp_path))
