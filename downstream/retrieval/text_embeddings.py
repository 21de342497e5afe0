"""Concept embeddings from text: concept names through a local sentence-embedding model.

BrainFLORA's text targets are "This picture is {concept}" through a CLIP text tower,
L2-normalised (spec §3.4). brainfm embeds the same text with any model of the
``sentence-transformers`` package that is already on this machine: a model folder, or a model
name in the local Hugging Face cache. Nothing is downloaded at run time; a model that is not
there is refused with the command that fetches it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brainfm._logging import logger
from brainfm.downstream.retrieval.paired_data import ConceptEmbeddings
from brainfm.errors import ConfigError

__all__ = ["embed_concept_names"]


def _load_model(model: str) -> object:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(
            "Text embeddings of concept names need the sentence-transformers package: "
            "pip install 'brainfm-platform[text]' (or give data.embeddings, a file of embeddings)."
        ) from exc
    folder = Path(model)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            folder = Path(snapshot_download(model, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"The sentence-embedding model {model!r} is neither a folder nor in the local Hugging Face "
                "cache, and brainfm never downloads at run time. Fetch it once on a machine with network "
                f"access (huggingface-cli download {model}; set HF_HOME to share the cache) or give the "
                "folder of a saved model."
            ) from exc
    if not (folder / "modules.json").is_file():
        raise ConfigError(f"{folder} is not a saved sentence-transformers model (no modules.json).")
    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def embed_concept_names(
    names: Sequence[str],
    model: str,
    template: str = "This picture is {concept}",
    batch_size: int = 64,
) -> ConceptEmbeddings:
    """Embed ``template`` of every concept name with a locally installed sentence-embedding model.

    Parameters
    ----------
    names : sequence of str
        Concept names (underscores are read as spaces: ``"aircraft_carrier"``).
    model : str
        A folder holding a saved ``sentence-transformers`` model, or a model name already in the
        local Hugging Face cache.
    template : str
        Text per concept; ``{concept}`` is replaced by the name.
    batch_size : int
        Texts per forward pass.

    Returns
    -------
    embeddings : ConceptEmbeddings
        One L2-normalised row per name, keyed by the name as given.
    """
    unique = list(dict.fromkeys(str(n) for n in names))
    if not unique:
        raise ConfigError("No concept names to embed.")
    encoder = _load_model(model)
    texts = [template.format(concept=name.replace("_", " ")) for name in unique]
    logger.info("embedding %d concept names with %s", len(texts), model)
    features = encoder.encode(  # type: ignore[attr-defined]
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return ConceptEmbeddings(unique, np.asarray(features, dtype=np.float32))
