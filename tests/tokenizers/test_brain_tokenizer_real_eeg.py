"""BrainTokenizer on real, common-average-referenced EEG: no collapse at initialisation, and learning.

With PyTorch's default initialisation the tokenizer started on a saddle on real EEG under
``sensortype`` normalisation (per-type common average): latents that do not depend on the
input (|lat(x) - lat(0)| / |lat(x)| ~ 0.001, mean pairwise cosine ~ 0.9997), the same
reconstruction for every channel, and a held-out PCC of 0.000 after training
(``docs/benchmarks.md``, "BrainTokenizer collapse on real EEG"). These tests read four eegmat
subjects from ``../shared/data`` through ``preprocess --recipe brainomni`` and the window loader.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brainfm.loading import WindowDataModule
from brainfm.tokenizers import BrainTokenizer
from brainfm.tokenizers.brain_tokenizer import brain_tokenizer_losses


def _data(store, seed: int = 0) -> WindowDataModule:
    """2-s windows, ``sensortype`` normalisation (the recipe's), one subject of four held out."""
    dm = WindowDataModule(store, window_s=2.0, batch_size=8, normalization="sensortype", channel_batching="bucket",
                          split_unit="subject", val_fraction=0.25, seed=seed)
    dm.setup("fit")
    return dm


def _mean_pairwise_cosine(vectors: torch.Tensor) -> float:
    v = F.normalize(vectors.reshape(-1, vectors.shape[-1]), dim=-1)
    cos = v @ v.T
    n = len(v)
    return float((cos.sum() - n) / (n * n - n))


def test_at_initialisation_latents_depend_on_real_eeg_and_reconstructions_differ_between_channels(eegmat_run2_store):
    with torch.random.fork_rng(devices=[]):  # seeded here, the global state left as it was
        torch.random.manual_seed(0)
        batch = next(iter(_data(eegmat_run2_store).val_dataloader()))
        # the per-type common average: the channel mean is ~0 at every sample (what made the saddle)
        assert float(batch.signal.mean(1).std() / batch.signal.std()) < 1e-4
        tokenizer = BrainTokenizer().eval()  # the published size
        zero = batch.to_dict()
        zero["signal"] = torch.zeros_like(batch.signal)
        with torch.no_grad():
            latents, sensors, windows = tokenizer.encode_latents(batch)
            latents_of_zero, _, _ = tokenizer.encode_latents(type(batch)(**zero))
            # the codebooks are fitted on the first training batch: decode the L2-normalised latents
            reconstruction = tokenizer.reconstruct_windows(F.normalize(latents, dim=-1), sensors)
        dependence = float(((latents - latents_of_zero).norm(dim=-1) / latents.norm(dim=-1)).mean())
        assert dependence > 0.1, dependence  # 0.0014 with PyTorch's default init
        cosine = _mean_pairwise_cosine(latents[:, :, :64])  # 16 latent channels x 64 steps per row
        assert cosine < 0.5, cosine  # 0.9997 with PyTorch's default init
        target = tokenizer.target(windows)
        spread = float(reconstruction.std(1).mean() / reconstruction.std())  # across channels, of the total
        target_spread = float(target.std(1).mean() / target.std())
        assert spread > 0.3 * target_spread, (spread, target_spread)  # 0.000001 against 0.98 before


def _heldout_pcc(tokenizer: BrainTokenizer, batches: list) -> float:
    tokenizer.eval()
    values = []
    with torch.no_grad():
        for batch in batches:
            latents, sensors, windows = tokenizer.encode_latents(batch)
            reconstruction = tokenizer.reconstruct_windows(tokenizer.quantize(latents)[0], sensors)
            valid = tokenizer.usable(batch)[:, :, None].expand(windows.shape[:3])
            values.append(float(brain_tokenizer_losses(reconstruction, tokenizer.target(windows), valid)["pcc"]))
    tokenizer.train()
    return sum(values) / len(values)


@pytest.mark.slow
def test_a_short_training_run_on_real_eeg_reaches_a_clearly_positive_heldout_pcc(eegmat_run2_store):
    with torch.random.fork_rng(devices=[]):  # seeded here, the global state left as it was
        torch.random.manual_seed(0)
        dm = _data(eegmat_run2_store)
        held_out = [b for _, b in zip(range(4), dm.val_dataloader(), strict=False)]
        tokenizer = BrainTokenizer(n_filters=8, dim=32, n_codes=64, n_levels=4, n_latents=4, n_heads=4, lstm_layers=1,
                                   kmeans_samples=1024)
        optimizer = torch.optim.AdamW(tokenizer.parameters(), lr=1e-3)
        step, pcc = 0, []
        while step < 120:
            for batch in dm.train_dataloader():
                loss = tokenizer.loss(batch)["loss"]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                if step % 60 == 0:
                    pcc.append(_heldout_pcc(tokenizer, held_out))
                if step == 120:
                    break
        # PyTorch's default init: 0.000 after 60, 150 and 300 steps (it learned a data-independent output)
        assert pcc[-1] > 0.1, pcc
        with torch.no_grad():
            tokenizer.eval()
            indices = tokenizer.encode(held_out[0])
        assert torch.unique(indices[..., 0]).numel() >= 0.25 * tokenizer.n_codes  # no codebook collapse
